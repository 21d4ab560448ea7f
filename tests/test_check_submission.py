"""compliance.check_submission on folders made from real runs: five short `ssd.train` runs laid out by
`compliance.summarize --submission` pass; seven broken copies each fail for their own reason.

Every run is `python -m ssd.train --config demo` (one process) on the session's tiny generated data
(tests/test_train.py's `tiny_data`): one epoch of 6 steps at batch 8, then one evaluation. With a
tiny eval.target_map the trainer stops there with run_stop success. One edit follows, and only for
those converged runs: the rulesets' target is mAP 0.225 (compliance/*_ssd_large.yaml) and such a run
scores about 0.0002, so `raise_accuracy` sets the logged eval_accuracy to 0.25. Everything else in
every log is as ssd.train wrote it; the broken variants swap in other real runs (a repeated seed,
global batch 4, the closed division, two runs that missed the target) or edit one line, as said.
"""

import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from compliance import mllog_records, summarize
from conftest import ROOT, child_env
from test_train import tiny_data, train_argv  # noqa: F401  (tiny_data: the session's generated dataset)

LOG = "mlperf_log.txt"
SEEDS = [101, 102, 103, 104, 105]
COMMON = ["train.epochs=1", "eval.epochs=1", "eval.every=0", "run.submission_org=acme",
          "run.submission_platform=cpu1"]
CONVERGES = "eval.target_map=0.000001"
RUNS = {
    **{f"seed{s}": [f"train.seed={s}", CONVERGES] for s in SEEDS},  # the submission
    "same_seed": ["train.seed=101", CONVERGES],
    "batch4": ["train.seed=106", CONVERGES, "train.batch_size=4"],  # global batch 4, not 8
    "closed": ["train.seed=107", CONVERGES, "run.submission_division=closed"],
    "missed_a": ["train.seed=108", "eval.target_map=1.0"],  # target not reached: run_stop aborted
    "missed_b": ["train.seed=109", "eval.target_map=1.0"],
}
# Given to `summarize --system-desc`: the counts the official result summarizer reads as integers.
SYSTEM = {"number_of_nodes": "1", "host_processors_per_node": "1", "accelerators_per_node": "0",
          "host_processor_model_name": "test machine CPU", "hw_notes": "tests/test_check_submission.py"}


def train(data, run_dir, overrides):
    argv = [sys.executable, *train_argv(data, run_dir, *COMMON, *overrides)]
    return subprocess.run(argv, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=1200)


def raise_accuracy(log):
    """The edit of the module docstring: a converged run's eval_accuracy up to the rulesets' target."""
    records = mllog_records.read_log(log)
    for record in mllog_records.of_key(records, "eval_accuracy"):
        record["value"] = max(record["value"], 0.25)
    mllog_records.write_log(log, records)


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):  # noqa: F811
    """{name: run directory} of RUNS, two processes at a time; the good folder under "submission"."""
    root = tmp_path_factory.mktemp("runs")
    with ThreadPoolExecutor(2) as pool:
        procs = dict(zip(RUNS, pool.map(lambda item: train(tiny_data, root / item[0], item[1]), RUNS.items())))
    for name, proc in procs.items():
        assert proc.returncode == (1 if name.startswith("missed") else 0), f"{name}:\n{proc.stdout[-3000:]}"
        if mllog_records.converged(mllog_records.read_log(root / name / LOG)):
            raise_accuracy(root / name / LOG)
    (root / "system.json").write_text(json.dumps(SYSTEM))
    proc = subprocess.run([sys.executable, "-m", "compliance.summarize", *(str(root / f"seed{s}") for s in SEEDS),
                           "--submission", str(root / "submission"), "--system-desc", str(root / "system.json")],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout
    return {"root": root, **{name: root / name for name in RUNS}}


def check(folder, out, *args):
    """Runs the checker's CLI, the JSON report to `out`: (exit status, printed report, JSON report)."""
    proc = subprocess.run([sys.executable, "-m", "compliance.check_submission", str(folder), "--json", str(out), *args],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    return proc.returncode, proc.stdout, json.loads(out.read_text()) if out.exists() else None


def failed_rules(report):
    return {f["rule"] for f in report["findings"] if not f["passed"]}


def results(folder):
    return folder / "acme" / "results" / "cpu1" / "ssd-large"


def test_the_submission_of_five_real_runs_passes(runs, tmp_path):
    status, text, report = check(runs["root"] / "submission", tmp_path / "report.json")
    assert status == 0, text
    assert report["passed"] and failed_rules(report) == set()
    assert {f["rule"] for f in report["findings"]} == {"layout", "system_description", "result_files", "ruleset",
                                                        "convergence", "seeds", "submission_keys", "hyperparameters",
                                                        "score"}
    (system,) = report["systems"]
    assert [r["file"] for r in system["runs"]] == [f"result_{i}.txt" for i in range(5)]
    assert [r["hyperparameters"]["seed"] for r in system["runs"]] == SEEDS
    assert all(r["converged"] and r["passed"] and r["epochs"] == 1 for r in system["runs"])
    # The score: the olympic mean of run_stop - run_start, re-derived from the run directories' logs.
    minutes = sorted(mllog_records.run_minutes(mllog_records.read_log(runs[f"seed{s}"] / LOG)) for s in SEEDS)
    assert system["score_minutes"] == pytest.approx(sum(minutes[1:4]) / 3)
    assert f"acme/results/cpu1/ssd-large: {system['score_minutes']:.2f} minutes, olympic mean of 3 runs" in text
    assert "PASSED: every rule holds" in text
    for i, seed in enumerate(SEEDS):  # the per-run table: file, seed, epochs, minutes, converged, check
        assert re.search(rf"^result_{i}\.txt +{seed} +1 +\d+\.\d\d +yes +pass$", text, re.MULTILINE), text


def copy_log(run_dir, result):
    shutil.copyfile(run_dir / LOG, result)


def drop_result_4(folder, runs):
    (results(folder) / "result_4.txt").unlink()


def duplicate_eval_samples(folder, runs):
    """An edit: result_2.txt's eval_samples line written twice (the ruleset wants it exactly once)."""
    log = results(folder) / "result_2.txt"
    records = mllog_records.read_log(log)
    i = records.index(mllog_records.of_key(records, "eval_samples")[0])
    mllog_records.write_log(log, records[: i + 1] + records[i:])


def drop_system_field(folder, runs):
    """An edit: the system description without host_memory_capacity."""
    path = folder / "acme" / "systems" / "cpu1.json"
    desc = json.loads(path.read_text())
    del desc["host_memory_capacity"]
    path.write_text(json.dumps(desc))


BROKEN = {
    "duplicated seed": (lambda f, r: copy_log(r["same_seed"], results(f) / "result_1.txt"), {"seeds"},
                        "acme/results/cpu1/ssd-large/result_1.txt: seed 101 is also result_0.txt's seed"),
    "four result files": (drop_result_4, {"result_files", "score"},
                          "acme/results/cpu1/ssd-large: 4 result files, expected exactly 5"),
    "two runs not converged": (lambda f, r: (copy_log(r["missed_a"], results(f) / "result_3.txt"),
                                             copy_log(r["missed_b"], results(f) / "result_4.txt")),
                               {"convergence", "score"},
                               "3 of 5 runs converged; not converged: result_3.txt, result_4.txt; at most 1 may not"),
    "a log of another division": (lambda f, r: copy_log(r["closed"], results(f) / "result_4.txt"),
                                  {"submission_keys", "ruleset"},
                                  "result_4.txt: logs submission_division 'closed', the submission's is 'open'"),
    "mixed global batch sizes": (lambda f, r: copy_log(r["batch4"], results(f) / "result_4.txt"), {"hyperparameters"},
                                 "global_batch_size differs: 8 in result_0.txt, result_1.txt, result_2.txt, "
                                 "result_3.txt; 4 in result_4.txt"),
    "system description missing a field": (drop_system_field, {"system_description"},
                                           "acme/systems/cpu1.json: missing required field host_memory_capacity"),
    "a log failing the ruleset": (duplicate_eval_samples, {"ruleset"},
                                  "result_2.txt: logs status success but fails compliance/open_ssd_large.yaml: "
                                  "Required EXACTLY_ONE occurrence of 'eval_samples' but found 2"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_submission_fails_for_its_reason(runs, tmp_path, name):
    breaks, rules, reason = BROKEN[name]
    folder = tmp_path / "submission"
    shutil.copytree(runs["root"] / "submission", folder)
    breaks(folder, runs)
    status, text, report = check(folder, tmp_path / "report.json")
    assert status == 1, text
    assert failed_rules(report) == rules, text
    assert reason in text, text
    assert f"FAILED: {', '.join(sorted(rules))}" in text


def test_the_division_can_be_imposed(runs, tmp_path):
    status, text, report = check(runs["root"] / "submission", tmp_path / "report.json", "--division", "closed")
    assert status == 1
    assert "acme/systems/cpu1.json: division 'open', but the submission is checked as 'closed'" in text
    assert {"system_description", "ruleset", "submission_keys"} <= failed_rules(report)
    assert "fails compliance/closed_ssd_large.yaml" in text


def test_an_org_folder_or_no_folder_is_refused(runs, tmp_path):
    status, text, report = check(runs["root"] / "submission" / "acme", tmp_path / "report.json")
    assert status == 1 and "this is an <org> folder; pass the folder that holds it" in text
    assert not report["passed"] and report["systems"] == []
    proc = subprocess.run([sys.executable, "-m", "compliance.check_submission", str(tmp_path / "absent")],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 2 and "not a directory" in proc.stdout


def test_summarize_and_the_checker_score_alike(runs, tmp_path):
    """Both call summarize.olympic_score on the same per-run minutes."""
    summary = summarize.summarize([str(runs[f"seed{s}"]) for s in SEEDS])
    _, _, report = check(runs["root"] / "submission", tmp_path / "report.json")
    assert report["systems"][0]["score_minutes"] == summary["score_minutes"]
