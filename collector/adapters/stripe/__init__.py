"""Stripe, reached only through the official SDK: one sender per forwarding mode."""
