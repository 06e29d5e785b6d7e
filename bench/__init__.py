"""Benchmarks: run a module as a script, e.g. `.venv/bin/python bench/models.py`."""
