"""Where the timed run's seconds go: run_stop - run_start split into parts, written as timing.json.

    timing = Timing()
    with timing.part("train_steps"):
        ...
        with timing.part("scoring_wait"):   # a nested part pauses the enclosing one
            ...
    timing.write(run_dir, run_seconds)      # timing.json; "other" is the rest

timing.json (read by compliance/summarize.py):

    {"run_seconds": <run_stop - run_start as logged>,
     "parts": {"train_steps": s, "eval_inference": s, "scoring_wait": s, "checkpoints": s, "other": s}}

Seconds as floats; the parts sum to run_seconds. The parts are wall-clock time of rank 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator

PARTS = ("train_steps", "eval_inference", "scoring_wait", "checkpoints")


class Timing:
    """Wall-clock seconds per part; at most one part runs at a time (nesting pauses the outer one)."""

    def __init__(self):
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self._open: list[list] = []  # [name, since] of the open parts, innermost last

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        if name not in self.seconds:
            raise ValueError(f"unknown timing part {name!r} (parts: {', '.join(PARTS)})")
        self._switch()
        self._open.append([name, time.perf_counter()])
        try:
            yield
        finally:
            self._switch()
            self._open.pop()

    def _switch(self) -> None:
        """Credits the innermost open part with the time since it last resumed, and restarts its clock."""
        now = time.perf_counter()
        if self._open:
            name, since = self._open[-1]
            self.seconds[name] += now - since
        for entry in self._open:
            entry[1] = now

    def breakdown(self, run_seconds: float) -> dict:
        """The timing.json content for a run of `run_seconds` (run_stop - run_start)."""
        parts = dict(self.seconds)
        parts["other"] = run_seconds - sum(self.seconds.values())
        return {"run_seconds": run_seconds, "parts": parts}

    def write(self, run_dir: str, run_seconds: float) -> dict:
        """Writes run_dir/timing.json (atomically) and returns its content."""
        data = self.breakdown(run_seconds)
        path = os.path.join(run_dir, "timing.json")
        with open(path + ".tmp", "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(path + ".tmp", path)
        return data


def format_lines(data: dict) -> list[str]:
    """A few lines for the log: each part's seconds and share of the run."""
    total = data["run_seconds"]
    lines = [f"timing: run_stop - run_start = {total:.1f} s"]
    for name, seconds in data["parts"].items():
        share = 100.0 * seconds / total if total > 0 else 0.0
        lines.append(f"  {name.replace('_', ' '):<15} {seconds:8.1f} s {share:5.1f}%")
    return lines
