"""Scores several ssd-large runs: per-run minutes, each run's compliance check, where the time went,
the official score; optionally lays out the MLPerf submission folder.

    python -m compliance.summarize runs/r1 runs/r2 runs/r3 runs/r4 runs/r5 \
        [--json summary.json] [--submission OUT [--system-desc system.json] [--implementation NAME]]

Each argument is a run directory (holding mlperf_log.txt, and timing.json when the trainer wrote
one) or a log file. A run's time is run_stop - run_start in minutes; its check is compliance/check.sh
on the log (the division the log names). The score is the olympic mean of 5 runs (`olympic_score`,
shared with compliance.check_submission). --submission OUT writes
    OUT/<org>/results/<system>/ssd-large/result_<N>.txt     the logs, N = 0, 1, ...
    OUT/<org>/systems/<system>.json                         the system description
    OUT/<org>/benchmarks/ssd-large/implementations/<NAME>/  this implementation's code
with <org> and <system> the logs' submission_org and submission_platform; the system description's
fields come from the logs, the installed packages and --system-desc (a JSON of field: value), and
those left empty are listed. `python -m compliance.check_submission OUT` checks the folder.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field

from compliance.mllog_records import (HYPERPARAMETERS, converged, epochs_trained, first_value, read_log,
                                      run_minutes)
from ssd import cli
from ssd.jsonfile import write_json

BENCHMARK = "ssd-large"
RUNS_PER_SCORE = 5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK_SH = os.path.join(ROOT, "compliance", "check.sh")
# Copied into benchmarks/ssd-large/implementations/<name>/ (relative to the repository root).
IMPLEMENTATION_FILES = ["ssd", "compliance", "benchmark/configs", "docker", "run_and_time.sh", "setup_env.sh",
                        "requirements.txt", "requirements-test.txt", "pyproject.toml", "README.md"]
# The fields mlperf_logging.system_desc_checker requires, in its order.
SYSTEM_DESC_FIELDS = [
    "submitter", "division", "status", "system_name", "number_of_nodes", "host_processors_per_node",
    "host_processor_model_name", "host_processor_core_count", "host_processor_vcpu_count",
    "host_processor_frequency", "host_processor_caches", "host_processor_interconnect", "host_memory_capacity",
    "host_storage_type", "host_storage_capacity", "host_networking", "host_networking_topology",
    "host_memory_configuration", "accelerators_per_node", "accelerator_model_name",
    "accelerator_host_interconnect", "accelerator_frequency", "accelerator_on-chip_memories",
    "accelerator_memory_configuration", "accelerator_memory_capacity", "accelerator_interconnect",
    "accelerator_interconnect_topology", "cooling", "hw_notes", "framework", "other_software_stack",
    "operating_system", "sw_notes",
]
# submission_status in the log -> the system description's availability category.
AVAILABILITY = {"onprem": "Available on-premise", "cloud": "Available cloud",
                "research": "Research, Development, or Internal (RDI)", "preview": "Preview"}
# <run_dir>/timing.json's parts of run_stop - run_start (written by ssd.train), with their short labels.
TIMING_PARTS = {"train_steps": "train", "eval_inference": "eval", "scoring_wait": "wait", "checkpoints": "ckpt",
                "other": "other"}


@dataclass
class RunResult:
    log: str
    minutes: float | None  # run_stop - run_start; None without both
    passed: bool  # the compliance check passed (and the log has both times): the run counts in the score
    converged: bool  # run_stop status success
    epochs: int  # epochs trained
    division: str
    benchmark: str
    org: str
    platform: str
    status: str  # submission_status
    hyperparameters: dict  # HYPERPARAMETERS -> the first value logged (None when absent)
    messages: list[str] = field(default_factory=list)  # the check's failure lines
    timing: dict | None = None  # timing.json of the run directory, when there is one


def log_path(run: str) -> str:
    """The mlperf_log.txt of a run directory, or `run` itself when it is a file."""
    path = os.path.join(run, "mlperf_log.txt") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run}: no compliance log (expected a run directory with mlperf_log.txt or a log)")
    return path


def check_log(path: str, division: str | None = None) -> tuple[bool, list[str]]:
    """Runs compliance/check.sh on a log (the division's ruleset; default the one the log names):
    (passed, the lines saying what failed)."""
    proc = subprocess.run([CHECK_SH, path] + ([division] if division else []), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    lines = [re.sub(r"^(INFO|WARNING|ERROR) - +", "", line.strip()) for line in proc.stdout.splitlines()]
    failures = [line for line in lines if line.startswith(("failed test:", "Required", "Failed checks", "check.sh:"))]
    return proc.returncode == 0, failures


def read_timing(run_dir: str) -> dict | None:
    """<run_dir>/timing.json ({"run_seconds": s, "parts": {part: s}}, parts as in TIMING_PARTS),
    None when the run directory has none; a malformed file raises ValueError naming it."""
    path = os.path.join(run_dir, "timing.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            timing = json.load(f)
        seconds, parts = timing["run_seconds"], timing["parts"]
        ok = (set(parts) == set(TIMING_PARTS) and seconds > 0
              and all(isinstance(v, (int, float)) and v >= 0 for v in parts.values()))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a timing file ({err!r})") from None
    if not ok:
        raise ValueError(f"{path}: expected run_seconds > 0 and parts {', '.join(TIMING_PARTS)} (seconds >= 0)")
    return timing


def format_timing(timing: dict | None) -> str:
    """Each part's share of the run, e.g. 'train 81% eval 12% wait 0% ckpt 0% other 7%'; '-' for none."""
    if timing is None:
        return "-"
    total = timing["run_seconds"]
    return " ".join(f"{label} {100 * timing['parts'][part] / total:.0f}%" for part, label in TIMING_PARTS.items())


def summarize_run(run: str, division: str | None = None) -> RunResult:
    """One run (a run directory or a log): its time, its check against `division`'s ruleset (default:
    the division the log names), what it logged; timing.json when `run` is a run directory."""
    path = log_path(run)
    records = read_log(path)
    passed, messages = check_log(path, division)
    minutes = run_minutes(records)
    return RunResult(log=path, minutes=minutes, passed=passed and minutes is not None, converged=converged(records),
                     epochs=epochs_trained(records),
                     division=first_value(records, "submission_division", ""),
                     benchmark=first_value(records, "submission_benchmark", ""),
                     org=first_value(records, "submission_org", ""),
                     platform=first_value(records, "submission_platform", ""),
                     status=first_value(records, "submission_status", ""),
                     hyperparameters={key: first_value(records, key) for key in HYPERPARAMETERS},
                     messages=messages, timing=read_timing(run) if os.path.isdir(run) else None)


def olympic_score(minutes: list[float | None]) -> tuple[float | None, str]:
    """The official score of 5 runs (None = a failed run) and why there is none when there is none.

    Drops the fastest and the slowest run and averages the rest; a failed run is the dropped
    slowest, so a second failure leaves no score (result_summarizer._compute_olympic_average with
    max_dropped_scores 1, as _compute_strong_score_standalone calls it for every benchmark but unet3d).
    """
    if len(minutes) != RUNS_PER_SCORE:
        return None, f"the score needs {RUNS_PER_SCORE} runs, got {len(minutes)}"
    passed = sorted(m for m in minutes if m is not None)
    failed = len(minutes) - len(passed)
    if failed > 1:
        return None, f"{failed} of {len(minutes)} runs failed; at most one may (it counts as the dropped slowest)"
    kept = passed[1:len(passed) - (1 - failed)]
    return sum(kept) / len(kept), f"olympic mean of {len(kept)} runs (fastest and slowest dropped)"


def summarize(runs: list[str]) -> dict:
    results = [summarize_run(r) for r in runs]
    score, note = olympic_score([r.minutes if r.passed else None for r in results])
    return {"benchmark": BENCHMARK, "runs": [asdict(r) for r in results], "score_minutes": score, "score_note": note}


def format_rows(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows of cells as aligned lines (every column but the last padded to its widest cell)."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    return ["  ".join([cell.ljust(w) for cell, w in zip(row, widths)] + [row[-1]]).rstrip() for row in rows]


def format_minutes(minutes: float | None) -> str:
    return "-" if minutes is None else f"{minutes:.2f}"


def format_table(summary: dict) -> str:
    rows = [("run", "minutes", "seed", "epochs", "check", "time in run", "log")]
    for i, r in enumerate(summary["runs"]):
        rows.append((str(i), format_minutes(r["minutes"]), str(r["hyperparameters"]["seed"]), str(r["epochs"]),
                     "pass" if r["passed"] else "FAIL", format_timing(r["timing"]), r["log"]))
    lines = format_rows(rows)
    for i, r in enumerate(summary["runs"]):
        lines += [f"run {i}: {m}" for m in r["messages"]]
    score = summary["score_minutes"]
    lines.append(f"score: {'-' if score is None else f'{score:.2f} minutes'} ({summary['score_note']})")
    return "\n".join(lines)


def _one(values: set, what: str) -> str:
    if len(values) != 1:
        raise ValueError(f"the runs disagree on {what}: {sorted(values)}; a submission folder holds one system")
    return values.pop()


def installed_framework() -> str:
    versions = []
    for name, dists in [("TensorFlow", ("tensorflow", "tensorflow-cpu")), ("Horovod", ("horovod",))]:
        for dist in dists:
            try:
                versions.append(f"{name} {importlib.metadata.version(dist)}")
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return ", ".join(versions)


def system_description(summary: dict, given: dict) -> dict:
    """Every required field: from the logs and installed packages, then `given` on top; others ''."""
    runs = summary["runs"]
    desc = {name: "" for name in SYSTEM_DESC_FIELDS}
    status = _one({r["status"] for r in runs}, "submission_status")
    desc.update(submitter=_one({r["org"] for r in runs}, "submission_org"),
                division=_one({r["division"] for r in runs}, "submission_division"),
                status=AVAILABILITY.get(status, status),
                system_name=_one({r["platform"] for r in runs}, "submission_platform"),
                framework=installed_framework())
    desc.update(given)
    return desc


def write_submission(summary: dict, out: str, given_desc: dict, implementation: str) -> list[str]:
    """Lays out the submission folder; returns the system description fields left empty."""
    desc = system_description(summary, given_desc)
    org, system = desc["submitter"], desc["system_name"]
    results = os.path.join(out, org, "results", system, BENCHMARK)
    os.makedirs(results, exist_ok=True)
    for i, run in enumerate(summary["runs"]):
        shutil.copyfile(run["log"], os.path.join(results, f"result_{i}.txt"))
    os.makedirs(os.path.join(out, org, "systems"), exist_ok=True)
    write_json(os.path.join(out, org, "systems", f"{system}.json"), desc)
    impl = os.path.join(out, org, "benchmarks", BENCHMARK, "implementations", implementation)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for rel in IMPLEMENTATION_FILES:
        src, dst = os.path.join(ROOT, rel), os.path.join(impl, rel)
        if os.path.isdir(src):
            shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True)
        elif os.path.isfile(src):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst)
    return [name for name in SYSTEM_DESC_FIELDS if desc[name] in ("", None)]


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser("compliance.summarize", __doc__)
    parser.add_argument("runs", nargs="+", help="run directories (with mlperf_log.txt) or log files")
    parser.add_argument("--json", help="also write the summary as JSON here")
    parser.add_argument("--submission", metavar="OUT", help="lay out the submission folder under OUT")
    parser.add_argument("--system-desc", help="JSON of system description fields (hardware, software)")
    parser.add_argument("--implementation", default="tensorflow", help="implementation folder name")
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.runs)
    except (FileNotFoundError, ValueError) as err:
        parser.fail(str(err))
    print(format_table(summary))
    if args.json:
        write_json(args.json, summary)
    if args.submission:
        given = {}
        if args.system_desc:
            with open(args.system_desc) as f:
                given = json.load(f)
        try:
            empty = write_submission(summary, args.submission, given, args.implementation)
        except ValueError as err:
            parser.fail(str(err))
        print(f"submission folder: {args.submission}")
        if empty:
            print(f"system description fields to fill in (--system-desc): {', '.join(empty)}")
    return 0 if summary["score_minutes"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
