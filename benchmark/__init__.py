"""Benchmarks: `python -m benchmark.<name>` scripts that print their figures and save them to benchmark/results/."""

import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
RESULTS = os.path.join(ROOT, "benchmark", "results")  # where each benchmark's --out defaults to


def save_result(path: str, result: dict) -> None:
    """Writes one benchmark's figures as indented JSON to `path` (its folder is created) and says so."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {path}")
