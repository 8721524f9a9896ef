"""Storage plumbing below the stores: SQLite files and PostgreSQL pools with migrations.

The vault, consent store, kill switch and provenance sinks build on these; nothing here
imports a store.
"""
