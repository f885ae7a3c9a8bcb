"""The loopback demo: a simulated customer instance, the collector and one agent."""
