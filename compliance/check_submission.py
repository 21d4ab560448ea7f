"""Checks an ssd-large submission folder by the official package checker's rules, and scores it.

    python -m compliance.check_submission DIR [--division closed|open] [--json REPORT]

DIR holds <org>/results/<system>/ssd-large/result_<N>.txt, <org>/systems/<system>.json and
<org>/benchmarks/ssd-large/implementations/<name>/, as `compliance.summarize --submission DIR`
lays it out. mlperf_logging's package_checker skips ssd-large (not one of its benchmarks) and its
result_summarizer fails on it, so this applies their rules for a benchmark scored over 5 runs, each
citing the function it follows, with compliance/check.sh for the logs. The division is --division,
else the system description's. Prints one line per rule (PASS/FAIL, the file, why), each system's
runs and score; exits 1 when a rule fails, 2 when DIR is not a directory.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass

from mlperf_logging.package_checker.seed_checker import find_source_files_under
from mlperf_logging.system_desc_checker.system_desc_checker import check_system_desc

from compliance.mllog_records import HYPERPARAMETERS
from compliance.summarize import (AVAILABILITY, BENCHMARK, RUNS_PER_SCORE, SYSTEM_DESC_FIELDS, RunResult,
                                  format_minutes, format_rows, olympic_score, summarize_run)
from ssd import cli
from ssd.jsonfile import write_json

OFFICIAL_RULESET = "6.1.0"  # the training ruleset of the installed mlperf_logging (check.sh parses with it)
# Counts that result_summarizer.summarize_results multiplies as int(desc[field]).
INTEGER_FIELDS = ("number_of_nodes", "host_processors_per_node", "accelerators_per_node")


@dataclass
class Finding:
    rule: str
    passed: bool
    path: str  # the file or folder it concerns, relative to DIR
    detail: str


def _subfolders(folder: str) -> list[str]:
    return sorted(name for name in os.listdir(folder) if os.path.isdir(os.path.join(folder, name)))


def _run_number(path: str) -> tuple:
    """result_<N>.txt sorts by N (result_10 after result_9)."""
    n = os.path.basename(path)[len("result_"):-len(".txt")]
    return (0, int(n), "") if n.isdigit() else (1, 0, n)


def check_layout(top: str) -> tuple[list[Finding], list[tuple[str, str]]]:
    """The folder structure; returns its findings and the (org, system) pairs that have ssd-large results.

    An org folder has results/ and systems/ (result_summarizer._is_organization_folder) and the code
    under benchmarks/ssd-large/ (package_checker.check_training_result_files collects its source files
    with seed_checker.find_source_files_under); results/<system>/ holds one folder per benchmark, and
    benchmarks other than ssd-large are skipped, as the official checker skips those it does not know.
    """
    findings, pairs = [], []
    if os.path.isdir(os.path.join(top, "results")) and os.path.isdir(os.path.join(top, "systems")):
        return [Finding("layout", False, ".", "this is an <org> folder; pass the folder that holds it")], []
    orgs = _subfolders(top)
    if not orgs:
        return [Finding("layout", False, ".", "no <org> folder (expected <org>/results, <org>/systems)")], []
    for org in orgs:
        missing = [d for d in ("results", "systems") if not os.path.isdir(os.path.join(top, org, d))]
        if missing:
            findings.append(Finding("layout", False, org, f"no {' or '.join(missing)} folder"))
            continue
        impl_root = os.path.join(top, org, "benchmarks", BENCHMARK, "implementations")
        impls = {name: len(find_source_files_under(os.path.join(impl_root, name)))
                 for name in (_subfolders(impl_root) if os.path.isdir(impl_root) else [])}
        if not any(impls.values()):
            findings.append(Finding("layout", False, os.path.relpath(impl_root, top),
                                    "no implementation folder with source files"))
        systems = _subfolders(os.path.join(top, org, "results"))
        if not systems:
            findings.append(Finding("layout", False, f"{org}/results", "no <system> folder"))
        skipped = []
        for system in systems:
            benchmarks = _subfolders(os.path.join(top, org, "results", system))
            skipped += [f"{system}/{b}" for b in benchmarks if b != BENCHMARK]
            if BENCHMARK in benchmarks:
                pairs.append((org, system))
            else:
                findings.append(Finding("layout", False, f"{org}/results/{system}", f"no {BENCHMARK} folder"))
        if all(f.passed for f in findings if f.path.split("/")[0] == org):
            code = ", ".join(f"{name} ({n} source files)" for name, n in impls.items() if n)
            findings.append(Finding("layout", True, org, f"systems/, benchmarks/{BENCHMARK}/implementations/{code}, "
                                    f"{BENCHMARK} results of {', '.join(systems)}"
                                    + (f"; other benchmarks skipped: {', '.join(skipped)}" if skipped else "")))
    return findings, pairs


def check_system_description(path: str, rel: str, org: str, division: str | None) -> tuple[list[Finding], str | None]:
    """systems/<system>.json: every field system_desc_checker.check_system_desc requires, with values
    of the kind the official tools read; returns the findings and the description's division."""
    if not os.path.isfile(path):  # result_summarizer._load_system_desc: "Missing"
        return [Finding("system_description", False, rel, "missing")], None
    try:
        with open(path) as f:
            desc = json.load(f)
    except json.JSONDecodeError as err:
        return [Finding("system_description", False, rel, f"not JSON ({err})")], None
    if not isinstance(desc, dict):
        return [Finding("system_description", False, rel, "not a JSON object")], None
    problems = []
    missing = [name for name in SYSTEM_DESC_FIELDS if name not in desc]
    if missing:  # system_desc_checker.check_system_desc: "Missing field"
        problems.append(f"missing required field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    odd = [name for name in SYSTEM_DESC_FIELDS if name in desc
           and (isinstance(desc[name], bool) or not isinstance(desc[name], (str, int, float)))]
    if odd:  # every field of a published system description is a string or a number
        problems.append(f"not a string or a number: {', '.join(odd)}")
    for name in INTEGER_FIELDS:  # result_summarizer.summarize_results: int(desc[name]) for the counts
        if name in desc and not isinstance(desc[name], bool):
            try:
                count = int(desc[name])
            except (TypeError, ValueError):
                problems.append(f"{name} {desc[name]!r} is not a whole number")
                continue
            if count < (1 if name == "number_of_nodes" else 0):
                problems.append(f"{name} {desc[name]!r} is out of range")
    # system_desc_checker.check_system_desc (training, rulesets >= 4.0): status is an availability.
    if "status" in desc and desc["status"] not in AVAILABILITY.values():
        problems.append(f"status {desc['status']!r} is not one of {', '.join(AVAILABILITY.values())}")
    # package_checker.check_training_result_files and result_summarizer read the division from here.
    desc_division = desc.get("division")
    if "division" in desc and desc_division not in ("closed", "open"):
        problems.append(f"division {desc_division!r} is neither closed nor open")
        desc_division = None
    elif division and desc_division and desc_division != division:
        problems.append(f"division {desc_division!r}, but the submission is checked as {division!r}")
    if "submitter" in desc and desc["submitter"] != org:  # result_summarizer._details_url: <submitter>/systems/
        problems.append(f"submitter {desc['submitter']!r} is not its <org> folder {org!r}")
    if not problems:
        logging.disable(logging.CRITICAL)  # the official function logs its verdict; ours is printed below
        try:
            valid = check_system_desc(path, "training", OFFICIAL_RULESET)[0]
        finally:
            logging.disable(logging.NOTSET)
        if not valid:
            problems.append("the official system_desc_checker rejects it")
    if problems:
        return [Finding("system_description", False, rel, p) for p in problems], desc_division
    return [Finding("system_description", True, rel, f"every field system_desc_checker requires; "
                    f"status {desc['status']!r}, division {desc['division']!r}")], desc_division


def check_results(top: str, org: str, system: str, division: str | None) -> tuple[list[Finding], dict]:
    """One system's ssd-large results: the rules on the result files, their logs and the score.

    Returns the findings and the system's entry of the report (its runs and score).
    """
    rel = f"{org}/results/{system}/{BENCHMARK}"
    folder = os.path.join(top, rel)
    files = sorted(glob.glob(os.path.join(folder, "result_*.txt")), key=_run_number)
    names = [os.path.basename(f) for f in files]
    others = sorted(set(os.listdir(folder)) - set(names))
    # package_checker.check_training_result_files: the number of result_*.txt files is exactly the
    # benchmark's count (benchmark_meta: 5 for the 5-run benchmarks ssd, retinanet, resnet, maskrcnn,
    # dlrm). Only HPC weak scaling accepts more, so no rule selects 5 of more: every file is scored.
    # Files not named result_*.txt draw an official warning, not an error; they are named here.
    stray = f"; not result files (ignored, as the official checker does): {', '.join(others)}" if others else ""
    findings = [Finding("result_files", len(files) == RUNS_PER_SCORE, rel,
                        f"{len(files)} result files, expected exactly {RUNS_PER_SCORE}" + stray)]
    runs: list[tuple[str, RunResult]] = []
    for path, name in zip(files, names):
        try:
            runs.append((name, summarize_run(path, division)))
        except ValueError as err:
            findings.append(Finding("ruleset", False, f"{rel}/{name}", str(err)))
    rules = f"compliance/{division}_ssd_large.yaml" if division else "the ruleset of the division each log names"

    # The logs' check. package_checker accepts one non-complying file under olympic scoring (any
    # reason); stricter here: only a run that did not converge may fail, so a log that claims
    # success (run_stop status success) must pass the ruleset.
    bad = [(name, r) for name, r in runs if r.converged and not r.passed]
    for name, r in bad:
        findings.append(Finding("ruleset", False, f"{rel}/{name}", f"logs status success but fails {rules}: "
                                + " | ".join(r.messages[:3] or ["(see compliance/check.sh on it)"])))
    if all(f.passed for f in findings if f.rule == "ruleset"):
        findings.append(Finding("ruleset", True, rel, f"{sum(r.passed for _, r in runs)} of {len(runs)} logs pass "
                                f"{rules}; every log that claims success does"))

    # package_checker: "1 file does not comply, accepting this under olympic scoring", more is an
    # error; result_summarizer drops at most 1 run (max_dropped_scores 1). Not converged: run_stop
    # status other than success (rcp_checker.read_submission_file), or a log that cannot be read.
    failed = [name for name, r in runs if not r.converged] + [n for n in names if n not in dict(runs)]
    findings.append(Finding("convergence", len(failed) <= 1, rel,
                            f"{len(files) - len(failed)} of {len(files)} runs converged"
                            + (f"; not converged: {', '.join(failed)}" if failed else "")
                            + "; at most 1 may not (the olympic mean drops it)"))

    # seed_checker.SeedChecker: every run logs a seed and no two runs log the same one (official:
    # closed division only, the same seed from the same source line; here: both divisions, any line).
    seen: dict = {}
    for name, r in runs:
        seed = r.hyperparameters["seed"]
        if seed is None:
            findings.append(Finding("seeds", False, f"{rel}/{name}", "logs no seed"))
        elif seed in seen:
            findings.append(Finding("seeds", False, f"{rel}/{name}", f"seed {seed} is also {seen[seed]}'s seed"))
        else:
            seen[seed] = name
    if all(f.passed for f in findings if f.rule == "seeds"):
        findings.append(Finding("seeds", True, rel, f"{len(seen)} distinct seeds: {', '.join(map(str, seen))}"))

    # The submission keys name this folder: benchmark, org (the <org> folder), platform (the <system>
    # folder) and division (the system description's, which package_checker reads).
    expected = {"benchmark": BENCHMARK, "org": org, "platform": system,
                "division": division or (runs[0][1].division if runs else "")}
    for name, r in runs:
        for key, want in expected.items():
            got = getattr(r, key)
            if got != want:
                findings.append(Finding("submission_keys", False, f"{rel}/{name}",
                                        f"logs submission_{key} {got!r}, the submission's is {want!r}"))
    if all(f.passed for f in findings if f.rule == "submission_keys"):
        findings.append(Finding("submission_keys", True, rel, "every log names division {division!r}, benchmark "
                                "{benchmark!r}, org {org!r}, platform {platform!r}".format(**expected)))

    # One configuration, 5 seeds: every hyperparameter but the seed is the same in every run
    # (rcp_checker.get_submission_epochs fails on "Batch sizes in files do not match").
    differ = []
    for key in HYPERPARAMETERS[1:]:
        values: dict[str, list[str]] = {}
        for name, r in runs:
            values.setdefault(json.dumps(r.hyperparameters[key]), []).append(name)
        if len(values) > 1:
            differ.append(f"{key} differs: " + "; ".join(f"{v} in {', '.join(n)}" for v, n in values.items()))
    findings += [Finding("hyperparameters", False, rel, d) for d in differ]
    if not differ and runs:
        gbs = runs[0][1].hyperparameters["global_batch_size"]
        findings.append(Finding("hyperparameters", True, rel, f"the {len(HYPERPARAMETERS) - 1} hyperparameters "
                                f"other than the seed are equal in every log (global_batch_size {gbs})"))

    minutes = [r.minutes if r.passed else None for _, r in runs] + [None] * (len(files) - len(runs))
    score, note = olympic_score(minutes)
    findings.append(Finding("score", score is not None, rel, note if score is None else f"{score:.2f} minutes, {note}"))
    return findings, {"org": org, "system": system, "division": division, "folder": rel,
                      "runs": [dict(file=name, **asdict(r)) for name, r in runs],
                      "score_minutes": score, "score_note": note}


def check_submission(top: str, division: str | None = None) -> dict:
    """Every rule on the folder `top`: {"passed", "findings": [Finding as dict], "systems": [...]}."""
    findings, pairs = check_layout(top)
    systems = []
    for org, system in pairs:
        rel = f"{org}/systems/{system}.json"
        desc_findings, desc_division = check_system_description(os.path.join(top, rel), rel, org, division)
        found, entry = check_results(top, org, system, division or desc_division)
        findings += desc_findings + found
        systems.append(entry)
    return {"directory": top, "passed": bool(pairs) and all(f.passed for f in findings),
            "findings": [asdict(f) for f in findings], "systems": systems}


def format_report(report: dict) -> str:
    lines = [f"ssd-large submission check: {report['directory']}"]
    rule_width = max(len(f["rule"]) for f in report["findings"])
    lines += [f"{'PASS' if f['passed'] else 'FAIL'}  {f['rule'].ljust(rule_width)}  {f['path']}: {f['detail']}"
              for f in report["findings"]]
    for entry in report["systems"]:
        rows = [("file", "seed", "epochs", "minutes", "converged", "check")]
        rows += [(r["file"], str(r["hyperparameters"]["seed"]), str(r["epochs"]), format_minutes(r["minutes"]),
                  "yes" if r["converged"] else "no", "pass" if r["passed"] else "FAIL") for r in entry["runs"]]
        score = entry["score_minutes"]
        lines += ["", f"{entry['folder']} (division {entry['division']}):"] + format_rows(rows)
        lines.append(f"score: {format_minutes(score)}{' minutes' if score is not None else ''} ({entry['score_note']})")
    failed = sorted({f["rule"] for f in report["findings"] if not f["passed"]})
    lines += ["", "PASSED: every rule holds" if report["passed"] else
              f"FAILED: {', '.join(failed) or 'no ssd-large results to check'}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser("compliance.check_submission", __doc__)
    parser.add_argument("dir", help="the submission folder (holding <org>/results, <org>/systems, ...)")
    parser.add_argument("--division", choices=("closed", "open"), help="default: the system description's")
    parser.add_argument("--json", metavar="REPORT", help="also write the report as JSON here ('-': stdout only)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.dir):
        parser.error(f"{args.dir}: not a directory")
    report = check_submission(os.path.normpath(args.dir), args.division)
    if args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        if args.json:
            write_json(args.json, report)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
