"""Blind checks: hand-written material the understanding was never tuned on (see README.md)."""
