"""Startup search: a frozen sentence-transformer with a trained gated head, on startup descriptions."""
