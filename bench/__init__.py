"""Benchmarks run by `make bench`; each module exposes run(quick: bool) -> dict."""
