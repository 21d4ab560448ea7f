"""Benchmarks: `python -m benchmark.<name>` scripts that print their figures and save them to benchmark/results/."""
