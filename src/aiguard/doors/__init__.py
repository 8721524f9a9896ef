"""The doors: thin adapters from the places code already calls models to the pipeline.

`transport` (httpx transports for the OpenAI and Anthropic SDKs), `streaming` (I/O-free
streamed restore), `endpoint` (the handler decorator), `dataset` (batch preparation) and
`gateway` (the OpenAI-compatible proxy, optional extra). Each knows the guard only through
`aiguard.pipeline.host.GuardHost`.
"""
