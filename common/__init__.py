"""Contracts shared by the agent and the collector: the report schema and the metric catalogue."""

__version__ = "0.1.0"
