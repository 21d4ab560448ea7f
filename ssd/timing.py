"""Where the timed run's seconds go: run_stop - run_start split into parts, written as timing.json.

    with timing.part("train_steps"): ...    # a nested part pauses the enclosing one
    timing.write(run_dir, run_seconds)      # "other" is the rest; format: docs/interfaces.md
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from ssd.jsonfile import write_json

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
        write_json(os.path.join(run_dir, "timing.json"), data)
        return data


def format_lines(data: dict) -> list[str]:
    """A few lines for the log: each part's seconds and share of the run."""
    total = data["run_seconds"]
    lines = [f"timing: run_stop - run_start = {total:.1f} s"]
    for name, seconds in data["parts"].items():
        share = 100.0 * seconds / total if total > 0 else 0.0
        lines.append(f"  {name.replace('_', ' '):<15} {seconds:8.1f} s {share:5.1f}%")
    return lines
