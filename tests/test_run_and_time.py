"""run_and_time.sh: each system config's commands (--dry-run) and the arithmetic in its comments;
the built-in default end to end (slow)."""

import json
import math
import os
import re
import shlex
import subprocess

import pytest

from ssd.config import load_config

CONFIGS = ["cpu_demo", "1xH100", "8xH100", "2x8xH100", "2x1xCPU"]
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
                if k not in ("COCO_DIR", "DATA_DIR", "HOSTS", "HOSTFILE", "IFACE", "LAUNCHER", "BATCH_SIZE")}
    full_env.update(SYSTEM=system, LOG_DIR=str(tmp_path / "runs"), DEMO_DIR=str(tmp_path / "demo"),
                    HOSTS=MULTI_NODE_HOSTS.get(system, ""), **env)
    if system not in ("cpu_demo", "2x1xCPU"):
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
    else:
        assert cfg.run.submission_division == "open"
        assert ["--out", str(tmp_path / "demo" / "coco")] == next(
            c[c.index("ssd.data.synthetic") + 1:] for c in commands if "ssd.data.synthetic" in c)
    assert commands[0][0] == "./setup_env.sh"
    check = next(c for c in commands if c[0] == "compliance/check.sh")
    assert check == ["compliance/check.sh", os.path.join(cfg.run.run_dir, "mlperf_log.txt")]


def test_user_overrides_come_last(repo_root, tmp_path):
    commands, _ = dry_run(repo_root, tmp_path, "cpu_demo", "train.epochs=3", BATCH_SIZE="8")
    _, args = train_args(commands)
    assert args[-1] == "train.epochs=3" and "train.batch_size=8" in args
    assert load_config(args[1], args[2:]).train.epochs == 3


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
    assert proc.returncode == 0, proc.stdout[-8000:]
    result = re.search(r"^RESULT,SSD_LARGE,,(\d+),[^,]+,(.+)$", proc.stdout, re.M)
    assert result and "STARTING TIMING RUN AT" in proc.stdout and "ENDING TIMING RUN AT" in proc.stdout
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
