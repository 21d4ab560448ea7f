"""Scores several ssd-large runs: per-run minutes, each run's compliance check, the official score.

    python -m compliance.summarize runs/r1 runs/r2 runs/r3 runs/r4 runs/r5 \
        [--json summary.json] [--submission OUT [--system-desc system.json] [--implementation NAME]]

Each argument is a run directory (holding mlperf_log.txt) or a log file. A run's time is its
first run_stop minus its first run_start, in minutes; its check is compliance/check.sh on the log
(the division the log names). The official score is the olympic mean of 5 runs: drop the fastest
and the slowest, average the other 3; a failed run (check failed or no run_stop) counts as the
dropped slowest, so 5 runs with at most one failure give a score.

--submission OUT lays out the MLPerf submission folder:
    OUT/<org>/results/<system>/ssd-large/result_<N>.txt     the logs, N = 0, 1, ...
    OUT/<org>/systems/<system>.json                         the system description
    OUT/<org>/benchmarks/ssd-large/implementations/<NAME>/  this implementation's code
with <org> and <system> the logs' submission_org and submission_platform. The system description
holds every field the official system_desc_checker requires: those the logs and the installed
packages tell are filled in, the rest come from --system-desc (a JSON of field: value) or are left
empty and reported. The official package checker and result summarizer skip or fail on a
benchmark they do not know; this one is written for ssd-large.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field

BENCHMARK = "ssd-large"
RUNS_PER_SCORE = 5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK_SH = os.path.join(ROOT, "compliance", "check.sh")
PREFIX = ":::MLLOG "
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


@dataclass
class RunResult:
    log: str
    minutes: float | None  # run_stop - run_start; None without both
    passed: bool  # the compliance check passed
    division: str
    org: str
    platform: str
    status: str  # submission_status
    messages: list[str] = field(default_factory=list)  # the check's failure lines


def log_path(run: str) -> str:
    """The mlperf_log.txt of a run directory, or `run` itself when it is a file."""
    path = os.path.join(run, "mlperf_log.txt") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run}: no compliance log (expected a run directory with mlperf_log.txt or a log)")
    return path


def read_log(path: str) -> list[dict]:
    """The `:::MLLOG` records of a log (lines may carry a launcher prefix), in order."""
    records = []
    with open(path, encoding="latin-1") as f:
        for lineno, line in enumerate(f, 1):
            if PREFIX in line:
                try:
                    records.append(json.loads(line.split(PREFIX, 1)[1]))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{lineno}: not a JSON log record ({err})") from None
    return records


def first_value(records: list[dict], key: str, default=None):
    return next((r["value"] for r in records if r["key"] == key), default)


def run_minutes(records: list[dict]) -> float | None:
    """First run_stop minus first run_start, in minutes (the official result summarizer's rule)."""
    start = next((r["time_ms"] for r in records if r["key"] == "run_start"), None)
    stop = next((r["time_ms"] for r in records if r["key"] == "run_stop"), None)
    if start is None or stop is None:
        return None
    return (stop - start) / 60000.0


def check_log(path: str) -> tuple[bool, list[str]]:
    """Runs compliance/check.sh on a log: (passed, the lines saying what failed)."""
    proc = subprocess.run([CHECK_SH, path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    failures = [line.strip() for line in proc.stdout.splitlines()
                if line.strip().startswith(("failed test:", "Required", "Failed checks", "check.sh:"))]
    return proc.returncode == 0, failures


def summarize_run(run: str) -> RunResult:
    path = log_path(run)
    records = read_log(path)
    passed, messages = check_log(path)
    minutes = run_minutes(records)
    return RunResult(log=path, minutes=minutes, passed=passed and minutes is not None,
                     division=first_value(records, "submission_division", ""),
                     org=first_value(records, "submission_org", ""),
                     platform=first_value(records, "submission_platform", ""),
                     status=first_value(records, "submission_status", ""), messages=messages)


def olympic_score(minutes: list[float | None]) -> tuple[float | None, str]:
    """The official score of 5 runs (None = a failed run) and why there is none when there is none.

    Drops the fastest and the slowest run and averages the rest; a failed run is the dropped
    slowest, so a second failure leaves no score.
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


def format_table(summary: dict) -> str:
    rows = [("run", "minutes", "check", "log")]
    for i, r in enumerate(summary["runs"]):
        minutes = "-" if r["minutes"] is None else f"{r['minutes']:.2f}"
        rows.append((str(i), minutes, "pass" if r["passed"] else "FAIL", r["log"]))
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    lines = ["  ".join(row[c].ljust(widths[c]) for c in range(3)) + "  " + row[3] for row in rows]
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
    with open(os.path.join(out, org, "systems", f"{system}.json"), "w") as f:
        json.dump(desc, f, indent=2)
        f.write("\n")
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
    parser = argparse.ArgumentParser(prog="python -m compliance.summarize", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories (with mlperf_log.txt) or log files")
    parser.add_argument("--json", help="also write the summary as JSON here")
    parser.add_argument("--submission", metavar="OUT", help="lay out the submission folder under OUT")
    parser.add_argument("--system-desc", help="JSON of system description fields (hardware, software)")
    parser.add_argument("--implementation", default="tensorflow", help="implementation folder name")
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.runs)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"summarize: {err}")
    print(format_table(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    if args.submission:
        given = {}
        if args.system_desc:
            with open(args.system_desc) as f:
                given = json.load(f)
        try:
            empty = write_submission(summary, args.submission, given, args.implementation)
        except ValueError as err:
            sys.exit(f"summarize: {err}")
        print(f"submission folder: {args.submission}")
        if empty:
            print(f"system description fields to fill in (--system-desc): {', '.join(empty)}")
    return 0 if summary["score_minutes"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
