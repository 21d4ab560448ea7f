"""Shared test fixtures: paths, the coco128 excerpt, a launcher for real multi-process Horovod runs, and
`require`, the one way a test states what it needs from the machine."""

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COCO128 = Path(os.environ.get("SSD_COCO128", ROOT.parent / "shared" / "data" / "coco128"))
MPI_AVAILABLE = shutil.which("mpirun") is not None
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skips the calling test (or module) with `reason` when `condition` is false; under CI=true
    fails it instead, so CI never goes green by skipping the tests that need coco128, torch or mpirun."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str):
    """The imported module `name`, or `require`'s skip/failure when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        error = err
    require(False, f"{name} is not installed ({error}); ./setup_env.sh --test installs it")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def coco128() -> Path:
    """../shared/data/coco128 (real COCO train2017 images + annotations); see `require` where absent."""
    require((COCO128 / "annotations" / "instances_train2017.json").is_file(),
            f"coco128 not found at {COCO128} (set SSD_COCO128)")
    return COCO128


def child_env(threads: int = 1) -> dict:
    """Environment for child processes: the repo importable, quiet TF, `threads` TF threads each."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["TF_NUM_INTRAOP_THREADS"] = str(threads)
    env["TF_NUM_INTEROP_THREADS"] = str(threads)
    return env


def launch(argv: list[str], np: int = 2, launcher: str = "gloo", timeout: float = 600, cwd=None,
           check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs `python argv...` as `np` real Horovod processes on this machine.

    launcher: "gloo" (horovodrun --gloo), "mpi" (mpirun) or "single" (one plain process, np ignored).
    env: variables added to child_env().
    Returns the completed process (stdout and stderr merged into .stdout); with check=True a
    non-zero exit fails the test showing the output.
    """
    python = [sys.executable, *argv]
    if launcher == "single":
        cmd = python
    elif launcher == "gloo":
        horovodrun = str(Path(sys.executable).with_name("horovodrun"))
        cmd = [horovodrun, "--gloo", "-np", str(np), "-H", f"localhost:{np}", *python]
    elif launcher == "mpi":
        require(MPI_AVAILABLE, "OpenMPI (mpirun) is not installed here")
        cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(np), "--bind-to", "none",
               "-x", "PYTHONPATH", "-x", "TF_CPP_MIN_LOG_LEVEL", "-x", "TF_NUM_INTRAOP_THREADS",
               "-x", "TF_NUM_INTEROP_THREADS", *python]
    else:
        raise ValueError(f"unknown launcher {launcher!r}")
    proc = subprocess.run(cmd, cwd=cwd or ROOT, env={**child_env(), **(env or {})}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def hvd_launch():
    """The `launch` function above, as a fixture."""
    return launch
