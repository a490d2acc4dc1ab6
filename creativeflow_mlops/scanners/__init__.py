"""Validators of model artifacts: plain Python, no ORM. Each takes a path
and explicit settings and returns a ``ScanReport``."""
