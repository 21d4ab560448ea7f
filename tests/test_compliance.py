"""The ssd-large rulesets through the official checker (compliance/check.sh): real logs pass,
hand-broken ones fail with the checker's message naming the broken rule."""

import json
import subprocess

import pytest
import yaml

PREFIX = ":::MLLOG "


@pytest.fixture(scope="module")
def real_logs(tmp_path_factory, hvd_launch):
    """mlperf_log.txt of 2-rank runs of tests/mllog_run.py: closed (ssd_large) and open (demo) in the
    asynchronous order (the trainer's default), and closed in the synchronous order."""
    out = tmp_path_factory.mktemp("runs")
    hvd_launch(["tests/mllog_run.py", str(out / "closed"), "--config", "ssd_large", "--accuracies", "0.1,0.3"])
    hvd_launch(["tests/mllog_run.py", str(out / "open"), "--config", "demo", "--accuracies", "0.05,0.1,0.3"])
    hvd_launch(["tests/mllog_run.py", str(out / "closed_sync"), "--config", "ssd_large", "--accuracies", "0.1,0.3",
                "--sync"])
    return {name: out / name / "mlperf_log.txt" for name in ("closed", "open", "closed_sync")}


def check(repo_root, log, division=None):
    argv = [str(repo_root / "compliance" / "check.sh"), str(log)] + ([division] if division else [])
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)


def read_records(log):
    return [json.loads(line[len(PREFIX):]) for line in log.read_text().splitlines() if line.startswith(PREFIX)]


def write_records(path, records):
    path.write_text("".join(PREFIX + json.dumps(r) + "\n" for r in records))
    return path


def index_of(records, key, nth=0):
    return [i for i, r in enumerate(records) if r["key"] == key][nth]


def test_real_runs_pass(repo_root, real_logs):
    for name, log in real_logs.items():
        result = check(repo_root, log)
        assert result.returncode == 0, result.stdout
        assert f"{name.split('_')[0]}_ssd_large.yaml" in result.stdout and "SUCCESS" in result.stdout


def events(records):
    """(key, epoch_num) of the epoch, evaluation and run records."""
    keys = ("run_start", "run_stop", "epoch_start", "epoch_stop", "eval_start", "eval_stop", "eval_accuracy")
    return [(r["key"], r["metadata"].get("epoch_num")) for r in records if r["key"] in keys]


def test_only_rank_zero_wrote(real_logs):
    records = read_records(real_logs["closed"])
    assert [r["key"] for r in records].count("run_start") == 1
    assert records[-1]["key"] == "run_stop" and records[-1]["metadata"]["status"] == "success"
    accuracies = [(r["metadata"]["epoch_num"], r["value"]) for r in records if r["key"] == "eval_accuracy"]
    assert accuracies == [(40, 0.1), (50, 0.3)]


def test_the_asynchronous_and_synchronous_orders(real_logs):
    """Asynchronous: an evaluation's accuracy arrives inside the next epoch, and the one at the
    target closes that epoch and the run. Synchronous: right after the evaluation."""
    order = events(read_records(real_logs["closed"]))
    i = order.index(("eval_stop", 40))
    assert order[i + 1:i + 4] == [("epoch_start", 41), ("eval_accuracy", 40), ("epoch_stop", 41)]
    assert order[-6:] == [("eval_start", 50), ("eval_stop", 50), ("epoch_start", 51), ("eval_accuracy", 50),
                          ("epoch_stop", 51), ("run_stop", None)]
    order = events(read_records(real_logs["closed_sync"]))
    i = order.index(("eval_stop", 40))
    assert order[i + 1:i + 3] == [("eval_accuracy", 40), ("epoch_start", 41)]
    assert order[-4:] == [("eval_start", 50), ("eval_stop", 50), ("eval_accuracy", 50), ("run_stop", None)]


def test_open_run_fails_the_closed_rules(repo_root, real_logs):
    result = check(repo_root, real_logs["open"], "closed")
    assert result.returncode != 0
    assert "v['value'] == 'closed'" in result.stdout
    assert "closed: [40, 50] x (1 + k/10)" in result.stdout  # the demo's boundaries are [10]


def test_aborted_real_run_fails(repo_root, hvd_launch, tmp_path):
    proc = hvd_launch(["tests/mllog_run.py", str(tmp_path), "--config", "demo", "--accuracies", "0.3",
                       "--raise-at-epoch", "2"], check=False)
    assert proc.returncode != 0 and "raised inside epoch 2" in proc.stdout
    records = read_records(tmp_path / "mlperf_log.txt")
    assert [r["key"] for r in records[-2:]] == ["epoch_stop", "run_stop"]
    result = check(repo_root, tmp_path / "mlperf_log.txt")
    assert result.returncode != 0
    assert "the run ended with status success" in result.stdout


def drop(key):
    return lambda rs: [r for r in rs if r["key"] != key]


def duplicate(key, value):
    def edit(rs):
        i = index_of(rs, key)
        return rs[: i + 1] + [dict(rs[i], value=value)] + rs[i + 1:]
    return edit


def set_value(key, value, nth=0):
    def edit(rs):
        rs[index_of(rs, key, nth)]["value"] = value
        return rs
    return edit


def aborted(rs):
    rs[-1]["metadata"]["status"] = "aborted"
    return rs


def eval_after_target(rs):
    """One more epoch and evaluation after the evaluation that reached the target."""
    stop = rs.pop()
    last = rs[index_of(rs, "epoch_stop", -1)]["metadata"]["epoch_num"] + 1
    for key in ("epoch_start", "epoch_stop", "eval_start", "eval_stop"):
        rs.append({**rs[index_of(rs, key, -1)], "metadata": {"epoch_num": last}})
    rs.append({**rs[index_of(rs, "eval_accuracy", -1)], "value": 0.31, "metadata": {"epoch_num": last}})
    return rs + [stop]


def doubled(rs):
    return [r for r in rs for _ in range(2)]


def eval_inside_epoch(rs):
    """The last evaluation (eval_start, eval_stop) moved inside its epoch, before its epoch_stop."""
    epoch = rs[index_of(rs, "eval_stop", -1)]["metadata"]["epoch_num"]
    moved = [rs.pop(index_of(rs, "eval_start", -1)), rs.pop(index_of(rs, "eval_stop", -1))]
    i = next(i for i, r in enumerate(rs) if r["key"] == "epoch_stop" and r["metadata"]["epoch_num"] == epoch)
    return rs[:i] + moved + rs[i:]


def move_accuracy(nth, after_key, after_epoch):
    """The nth eval_accuracy moved to right after the record `after_key` {epoch_num: after_epoch}."""
    def edit(rs):
        accuracy = rs.pop(index_of(rs, "eval_accuracy", nth))
        i = next(i for i, r in enumerate(rs) if r["key"] == after_key and r["metadata"].get("epoch_num") == after_epoch)
        return rs[:i + 1] + [accuracy] + rs[i + 1:]
    return edit


def drop_last_accuracy(rs):
    i = index_of(rs, "eval_accuracy", -1)
    return rs[:i] + rs[i + 1:]


def accuracy_after_run_stop(rs):
    return [r for r in rs if r["key"] != "eval_accuracy" or r["metadata"]["epoch_num"] != 50] + \
        [next(r for r in rs if r["key"] == "eval_accuracy" and r["metadata"]["epoch_num"] == 50)]


def skipped_epoch(rs):
    """Epoch 3 missing: every epoch_num from 3 on (epochs, evaluations, accuracies) one higher."""
    for r in rs:
        if r["metadata"].get("epoch_num", 0) >= 3:
            r["metadata"]["epoch_num"] += 1
    return rs


BROKEN = {
    "missing key": (drop("seed"), "Required EXACTLY_ONE occurrence of 'seed' but found 0"),
    "duplicated key": (duplicate("seed", 99), "Required EXACTLY_ONE occurrence of 'seed' but found 2"),
    "aborted status": (aborted, "failed test: v['metadata'].get('status') == 'success'"),
    "accuracy below target": (set_value("eval_accuracy", 0.224, nth=1),
                              "Failed checks for eval_accuracy : s['target'] <= v['value'] < 1.0  # the target, mAP 0.225"),
    "evaluation after target": (eval_after_target, "no training after the evaluation that reached the target"),
    "wrong boundaries": (set_value("opt_learning_rate_decay_boundary_epochs", [40, 55]),
                         "closed: [40, 50] x (1 + k/10), one integer k"),
    "every line doubled": (doubled, "Required EXACTLY_ONE occurrence of 'seed' but found 2"),
    "max_samples": (set_value("max_samples", 10), "closed: the random crop tries 1 or 50 times"),
    "fractional warmup factor": (set_value("opt_learning_rate_warmup_factor", 1e-3),
                                 "closed: warmup_factor is an integer k >= 0"),
    "gradient accumulation": (set_value("gradient_accumulation_steps", 0), "gradient_accumulation_steps >= 1"),
    "eval inside epoch": (eval_inside_epoch, "the epoch and the previous evaluation are finished"),
    "skipped epoch": (skipped_epoch, "epochs are numbered 1, 2, 3, ..."),
    "wrong benchmark": (set_value("submission_benchmark", "ssd"), "this ruleset is for ssd-large"),
    # The asynchronous order's limits.
    "accuracy before its eval_stop": (move_accuracy(0, "eval_start", 40), "one eval_accuracy after each eval_stop"),
    "accuracy twice": (duplicate("eval_accuracy", 0.1), "one eval_accuracy after each eval_stop"),
    "accuracy two epochs late": (move_accuracy(0, "epoch_start", 42),
                                 "an evaluation's eval_accuracy comes before the epoch after the next one starts"),
    "accuracy after the next evaluation": (move_accuracy(0, "eval_stop", 50),
                                           "the epoch and the previous evaluation are finished (its eval_accuracy"),
    "accuracy after run_stop": (accuracy_after_run_stop, "eval_accuracy comes before run_stop"),
    "run_stop before the pending accuracy": (drop_last_accuracy,
                                             "nothing is left open: every eval_stop has its eval_accuracy"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_logs_fail(repo_root, real_logs, tmp_path, name):
    edit, message = BROKEN[name]
    log = write_records(tmp_path / "mlperf_log.txt", edit(read_records(real_logs["closed"])))
    result = check(repo_root, log, "closed")
    assert result.returncode != 0, f"{name}: the check passed:\n{result.stdout}"
    assert message in result.stdout, result.stdout
    assert "FAILED" in result.stdout


@pytest.mark.parametrize("boundaries", [[40, 50], [44, 55], [36, 45]])
def test_allowed_boundaries_pass(repo_root, real_logs, tmp_path, boundaries):
    records = set_value("opt_learning_rate_decay_boundary_epochs", boundaries)(read_records(real_logs["closed"]))
    result = check(repo_root, write_records(tmp_path / "mlperf_log.txt", records), "closed")
    assert result.returncode == 0, result.stdout


HYPERPARAMETERS = ["seed", "global_batch_size", "gradient_accumulation_steps", "opt_name", "opt_base_learning_rate",
                   "opt_weight_decay", "opt_learning_rate_warmup_steps", "opt_learning_rate_warmup_factor",
                   "opt_learning_rate_decay_boundary_epochs", "max_samples", "model_bn_span", "train_samples",
                   "eval_samples"]


def test_open_rules_are_the_closed_structure(repo_root):
    """open_ssd_large.yaml = closed_ssd_large.yaml without the hyperparameter value checks, division open."""
    def load(name):
        return yaml.safe_load((repo_root / "compliance" / name).read_text())

    closed, open_ = load("closed_ssd_large.yaml"), load("open_ssd_large.yaml")
    assert closed[0] == open_[0] and list(closed[0]) == ["BEGIN"]
    closed_keys = {r["KEY"]["NAME"]: r["KEY"] for r in closed[1:]}
    open_keys = {r["KEY"]["NAME"]: r["KEY"] for r in open_[1:]}
    assert list(closed_keys) == list(open_keys)
    during_init = "s['init_started'] and not s['init_stopped']  # logged during init"
    for name in HYPERPARAMETERS:
        assert open_keys[name] == {"NAME": name, "REQ": "EXACTLY_ONE", "CHECK": [during_init]}
        assert closed_keys[name]["REQ"] == "EXACTLY_ONE" and during_init in closed_keys[name]["CHECK"]
    division = "submission_division"
    assert [c.replace("'closed'", "'open'").replace("closed-", "open-") for c in closed_keys[division]["CHECK"]] \
        == open_keys[division]["CHECK"]
    for name in set(closed_keys) - set(HYPERPARAMETERS) - {division}:
        assert open_keys[name] == closed_keys[name], name


def test_usage_errors(repo_root, tmp_path):
    assert check(repo_root, tmp_path / "absent.txt").returncode == 2
    empty = tmp_path / "empty.txt"
    empty.write_text("no mllog lines\n")
    result = check(repo_root, empty)
    assert result.returncode == 1 and "logs no submission_division" in result.stdout
