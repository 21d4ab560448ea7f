"""run_and_time.sh: each system config's commands (--dry-run) and the arithmetic in its comments;
the page cache dropped (or not) and cache_clear logged as it happened, on real runs; the built-in
default end to end (slow)."""

import json
import math
import os
import re
import shlex
import subprocess

import pytest

from compliance import mllog_records
from conftest import child_env
from ssd.config import load_config
from test_train import tiny_data  # noqa: F401  (the session's generated dataset)

CONFIGS = ["cpu_demo", "cpu_coco128", "1xH100", "8xH100", "2x8xH100", "2x1xCPU"]
MULTI_NODE_HOSTS = {"2x8xH100": "node1:8,node2:8", "2x1xCPU": "node1:1,node2:1"}
TRAIN_IMAGES = 117266  # COCO train2017 images with annotations


def dry_run(repo_root, tmp_path, system, *overrides, **env):
    """The commands `SYSTEM=system ./run_and_time.sh --dry-run` prints, as argv lists."""
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True, exist_ok=True)
    (coco / "weights").mkdir(exist_ok=True)
    for name in ("annotations/instances_train2017.json", "annotations/instances_val2017.json",
                 "weights/resnet34-333f7ec4.pth"):
        (coco / name).touch()
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("COCO_DIR", "DATA_DIR", "HOSTS", "HOSTFILE", "IFACE", "LAUNCHER", "BATCH_SIZE",
                             "REHEARSAL_DIR")}
    full_env.update(SYSTEM=system, LOG_DIR=str(tmp_path / "runs"), DEMO_DIR=str(tmp_path / "demo"),
                    HOSTS=MULTI_NODE_HOSTS.get(system, ""), **env)
    if system == "cpu_coco128":
        full_env.update(REHEARSAL_DIR=str(coco), DATA_DIR=str(tmp_path / "records"))
    elif system not in ("cpu_demo", "2x1xCPU"):
        full_env["COCO_DIR"] = str(coco)
    if not full_env["HOSTS"]:
        del full_env["HOSTS"]
    proc = subprocess.run([str(repo_root / "run_and_time.sh"), "--dry-run", *overrides], env=full_env,
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    return [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")], proc.stdout


def train_args(commands):
    (argv,) = [c for c in commands if "ssd.train" in c]
    return argv, argv[argv.index("ssd.train") + 1:]


def comment_number(text, label):
    """The number after the last '=' on the comment line starting with `label`."""
    line = next(line for line in text.splitlines() if re.match(rf"#\s+{label}\s*=", line))
    return float(re.findall(r"=\s*([0-9.e-]+)", line)[-1])


@pytest.mark.parametrize("system", CONFIGS)
def test_config_commands_and_arithmetic(repo_root, tmp_path, system):
    commands, out = dry_run(repo_root, tmp_path, system)
    launch, args = train_args(commands)
    assert args[0] == "--config"
    cfg = load_config(args[1], args[2:])  # every override the harness passes is valid
    text = (repo_root / "benchmark" / "configs" / f"config_{system}.sh").read_text()
    settings = dict(re.findall(r"^(\w+)=\$\{\w+:-([^}]*)\}", text, re.M))
    ranks = int(settings["NNODES"]) * int(settings["NRANKS_PER_NODE"])
    if settings["LAUNCHER"] == "single":
        assert ranks == 1 and launch[0].endswith("/python")
    elif settings["LAUNCHER"] == "horovodrun":  # run as a module of the package: a quiet TensorFlow start
        assert launch[0].endswith("/python") and launch[1:3] == ["-m", "ssd.horovodrun"]
        assert launch[launch.index("-np") + 1] == str(ranks)
    else:
        assert os.path.basename(launch[0]) == settings["LAUNCHER"]
        assert launch[launch.index("-np") + 1] == str(ranks)
    global_batch = ranks * cfg.train.batch_size
    assert f"global batch {global_batch}," in out
    assert comment_number(text, "global batch") == global_batch
    lr = cfg.train.base_lr * global_batch / cfg.train.lr_reference_batch
    assert comment_number(text.replace("LR x0.1", ""), "LR") == pytest.approx(lr)
    assert cfg.run.submission_platform == settings["SUBMISSION_PLATFORM"]
    assert cfg.run.run_dir.startswith(str(tmp_path / "runs"))
    if args[1] == "ssd_large":
        assert cfg.run.submission_division == "closed" and settings["SETUP_FLAGS"] == "--gpu"
        assert comment_number(text, "steps/epoch") == TRAIN_IMAGES // global_batch
        warmup_epochs = float(re.search(r"warmup is ([0-9.]+) epochs", text).group(1))
        assert warmup_epochs == pytest.approx(cfg.train.warmup_steps / (TRAIN_IMAGES // global_batch), abs=0.005)
        assert cfg.train.backbone_weights == str(tmp_path / "coco" / "weights" / "resnet34")
        assert [c[c.index("ssd.data.prepare") + 1:] for c in commands if "ssd.data.prepare" in c] == [
            ["--coco-dir", str(tmp_path / "coco"), "--split", s, "--out", str(tmp_path / "coco" / "tfrecords" / s)]
            for s in ("train", "val")]
        assert any("ssd.import_weights" in c for c in commands)
    elif args[1] == "coco128":  # train and val from the same images
        assert cfg.run.submission_division == "open" and cfg.data.data_dir == str(tmp_path / "records")
        assert [c[c.index("ssd.data.prepare") + 1:] for c in commands if "ssd.data.prepare" in c] == [
            ["--coco-dir", str(tmp_path / "coco"), "--split", s, "--out", str(tmp_path / "records" / s),
             "--image-set", "train2017", "--shards", n] for s, n in (("train", "8"), ("val", "2"))]
        assert comment_number(text, "steps/epoch") == 126 // global_batch
    else:
        assert cfg.run.submission_division == "open"
        assert ["--out", str(tmp_path / "demo" / "coco")] == next(
            c[c.index("ssd.data.synthetic") + 1:] for c in commands if "ssd.data.synthetic" in c)
    assert commands[0][0] == "./setup_env.sh"
    check = next(c for c in commands if c[0] == "compliance/check.sh")
    assert check == ["compliance/check.sh", os.path.join(cfg.run.run_dir, "mlperf_log.txt")]


def test_user_overrides_come_last(repo_root, tmp_path):
    commands, _ = dry_run(repo_root, tmp_path, "cpu_demo", "train.epochs=3", "run.cache_cleared=true", BATCH_SIZE="8",
                          DROP_CACHES=str(tmp_path / "absent" / "drop_caches"))
    _, args = train_args(commands)
    # Only the launcher's own fact follows them: whether it dropped the page cache.
    assert args[-3:] == ["train.epochs=3", "run.cache_cleared=true", "run.cache_cleared=false"]
    assert "train.batch_size=8" in args
    cfg = load_config(args[1], args[2:])
    assert cfg.train.epochs == 3 and cfg.run.cache_cleared is False


@pytest.mark.parametrize("allowed", [True, False])
def test_dry_run_drops_the_page_cache_before_the_launch(repo_root, tmp_path, allowed):
    knob = tmp_path / ("drop_caches" if allowed else "absent/drop_caches")
    if allowed:
        knob.write_text("0\n")
    commands, _ = dry_run(repo_root, tmp_path, "cpu_demo", DROP_CACHES=str(knob))
    launch = next(i for i, c in enumerate(commands) if "ssd.train" in c)
    assert commands[launch - 2:launch] == [["sync"], ["echo", "3", ">", str(knob)]]
    assert commands[launch][-1] == f"run.cache_cleared={str(allowed).lower()}"
    if allowed:
        assert knob.read_text() == "0\n"  # a dry run writes nothing


def test_cpu_system_with_coco_runs_the_benchmark(repo_root, tmp_path):
    coco = tmp_path / "coco"
    commands, _ = dry_run(repo_root, tmp_path, "cpu_demo", COCO_DIR=str(coco))
    _, args = train_args(commands)
    cfg = load_config(args[1], args[2:])
    assert args[1] == "ssd_large" and cfg.data.data_dir == str(coco / "tfrecords")
    assert not any("ssd.data.synthetic" in c for c in commands)
    assert sum("ssd.data.prepare" in c for c in commands) == 2


@pytest.mark.parametrize("system, env, message", [
    ("cpu_demo", {"COCO_DIR": "/tmp", "CONFIG": "demo"}, "the demo preset is for the generated data"),
    ("nope", {}, "no benchmark/configs/config_nope.sh"),
    ("2x8xH100", {"HOSTS": ""}, "set HOSTS"),
    ("1xH100", {"NRANKS_PER_NODE": "2"}, "LAUNCHER=single runs one process"),
    ("cpu_demo", {"DATA_DIR": "/nonexistent"}, "/nonexistent/train/manifest.json is missing"),
    ("cpu_coco128", {"REHEARSAL_DIR": "/nonexistent", "DATA_DIR": "/nonexistent"},
     "/nonexistent/annotations/instances_train2017.json is missing"),
    ("cpu_coco128", {"COCO_DIR": "/tmp"}, "set COCO_DIR or REHEARSAL_DIR, not both"),
])
def test_bad_settings_are_named(repo_root, tmp_path, system, env, message):
    full_env = dict(os.environ, SYSTEM=system, LOG_DIR=str(tmp_path), **env)
    proc = subprocess.run([str(repo_root / "run_and_time.sh"), "--dry-run"], env=full_env, cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stdout, proc.stdout


@pytest.mark.slow
def test_built_in_default_end_to_end(repo_root, tmp_path):
    """`./run_and_time.sh` as a user runs it: RESULT line, passing check, the run directory's files."""
    env = dict(os.environ, LOG_DIR=str(tmp_path), RUN_NAME="default")
    proc = subprocess.run([str(repo_root / "run_and_time.sh")], env=env, cwd=repo_root, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=40 * 60)
    (tmp_path / "console.txt").write_text(proc.stdout)  # what a user sees, kept for reading
    assert proc.returncode == 0, proc.stdout[-8000:]
    result = re.search(r"^RESULT,SSD_LARGE,,(\d+),[^,]+,(.+)$", proc.stdout, re.M)
    assert result and "STARTING TIMING RUN AT" in proc.stdout and "ENDING TIMING RUN AT" in proc.stdout
    # A calm console: no TensorFlow start-up noise, no compliance log lines (they are in mlperf_log.txt).
    assert not [line for line in proc.stdout.splitlines() if re.search(r"E0000|cuda_|cuInit|oneDNN|XLA|:::MLLOG", line)]
    run_dir = tmp_path / "default"
    assert "SUCCESS" in (run_dir / "compliance_check.txt").read_text()
    for name in ("config.json", "mlperf_log.txt", "train_log.txt", "detections.json", "training_curves.png",
                 "predictions.png", "tensorboard", "checkpoints", "timing.json"):
        assert (run_dir / name).exists(), name
    from compliance.summarize import read_log, run_minutes

    minutes = run_minutes(read_log(str(run_dir / "mlperf_log.txt")))
    assert 0 < minutes * 60 <= int(result.group(1)) + 1
    assert math.isfinite(minutes)
    timing = json.loads((run_dir / "timing.json").read_text())
    assert timing["run_seconds"] == pytest.approx(minutes * 60, abs=1e-6)
    assert sum(timing["parts"].values()) == pytest.approx(timing["run_seconds"], abs=1e-9)
    evals = [e["map"] for e in json.loads((run_dir / "metrics.json").read_text())["epochs"] if "map" in e]
    assert evals and evals[-1] >= 0.225, evals


@pytest.mark.parametrize("allowed", [True, False])
def test_cache_clear_is_logged_as_it_happened(repo_root, tiny_data, tmp_path, allowed):  # noqa: F811
    """A real run_and_time.sh (one process, tiny data, 2 steps): with a writable DROP_CACHES it writes
    3 there and ssd.train logs cache_clear True; where it may not write (a path in a missing
    directory, as /proc/sys/vm/drop_caches in an unprivileged container) it says so in one line and
    ssd.train logs False."""
    knob = tmp_path / ("drop_caches" if allowed else "absent/drop_caches")
    if allowed:
        knob.write_text("0\n")
    env = dict(child_env(), SYSTEM="cpu_demo", LAUNCHER="single", NRANKS_PER_NODE="1", BATCH_SIZE="8",
               DATA_DIR=str(tiny_data), LOG_DIR=str(tmp_path / "runs"), RUN_NAME="run", DROP_CACHES=str(knob))
    proc = subprocess.run([str(repo_root / "run_and_time.sh"), "train.max_steps=2", "eval.epochs=", "eval.every=0"],
                          env=env, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1200)
    # Stopped at train.max_steps: run_stop aborted, so the check fails and the script exits 1.
    assert proc.returncode == 1 and "the compliance check failed" in proc.stdout, proc.stdout[-5000:]
    not_dropped = f"run_and_time.sh: cannot write {knob} (needs root and a writable /proc): the page cache is " \
                  "not dropped, cache_clear False"
    if allowed:
        assert knob.read_text() == "3\n" and f"page cache dropped (sync; echo 3 > {knob})" in proc.stdout
        assert not_dropped not in proc.stdout
    else:
        assert proc.stdout.count(not_dropped) == 1 and not knob.parent.exists()
    records = mllog_records.read_log(tmp_path / "runs" / "run" / "mlperf_log.txt")
    assert [r["value"] for r in mllog_records.of_key(records, "cache_clear")] == [allowed]
    assert records[0]["key"] == "cache_clear"
