"""Benchmarks: each prints its figure next to the floor or peer it must beat. Run with `make bench`."""
