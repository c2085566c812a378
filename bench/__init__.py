"""Benchmarks that run podlink beside the tools a user would otherwise use, printing JSON lines."""
