"""ssd/timing.py: the parts of the timed run, nested parts pausing the enclosing one, timing.json."""

import json
import time

import pytest

from ssd.timing import PARTS, Timing, format_lines


def test_nested_part_pauses_the_enclosing_one(tmp_path):
    timing = Timing()
    with timing.part("train_steps"):
        time.sleep(0.2)
        with timing.part("scoring_wait"):
            time.sleep(0.3)
        time.sleep(0.1)
    with timing.part("checkpoints"):
        time.sleep(0.05)
    s = timing.seconds
    assert 0.3 <= s["train_steps"] < 0.6  # 0.2 + 0.1: without the nested part's 0.3
    assert 0.3 <= s["scoring_wait"] < 0.6
    assert 0.05 <= s["checkpoints"] < 0.3
    assert s["eval_inference"] == 0.0
    data = timing.write(str(tmp_path), run_seconds=1.0)
    assert json.loads((tmp_path / "timing.json").read_text()) == data
    assert list(data) == ["run_seconds", "parts"] and data["run_seconds"] == 1.0
    assert list(data["parts"]) == [*PARTS, "other"]
    assert all(isinstance(v, float) for v in data["parts"].values())
    assert sum(data["parts"].values()) == pytest.approx(1.0, abs=1e-12)
    lines = format_lines(data)
    assert lines[0] == "timing: run_stop - run_start = 1.0 s" and len(lines) == 6
    assert lines[-1].split()[0] == "other" and lines[-1].endswith("%")


def test_unknown_part_is_an_error():
    with pytest.raises(ValueError, match="unknown timing part 'waiting'"):
        with Timing().part("waiting"):
            pass
