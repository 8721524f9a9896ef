"""The per-call pipeline every door ends in: decide, protect, restore, route.

It knows the guard only through `GuardHost` (`aiguard.pipeline.host`), so nothing here
imports the `Guard` facade that composes it.
"""
