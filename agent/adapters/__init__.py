"""Adapters: the only code that talks to Prometheus, the device API, /metrics and the collector."""
