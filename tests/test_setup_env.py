"""setup_env.sh: idempotent, repairs a broken environment; .ci/run is exactly the README's test command.

setup_env.sh runs on a throwaway copy of the test venv (SSD_VENV), never on the venv running the tests:
the repair test uninstalls a package, and that venv may be shared by other checkouts.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TEST_VENV = Path(sys.prefix).resolve()  # the venv running the tests (.venv may be a symlink): never touched here


def _stamp(venv: Path) -> str:
    return (venv / ".ssd-setup-stamp").read_text()


def run_setup(repo_root: Path, venv: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, SSD_VENV=str(venv))
    return subprocess.run(["./setup_env.sh", "--test"], cwd=repo_root, env=env, capture_output=True, text=True,
                          timeout=1800)


@pytest.fixture(scope="module")
def venv(tmp_path_factory, repo_root):
    """A full copy of the test venv (`cp -a`: its own files, no hard links) that runs as itself, set up
    once by setup_env.sh --test (from whatever state the test venv's stamp records)."""
    copy = tmp_path_factory.mktemp("throwaway") / "venv"
    subprocess.run(["cp", "-a", str(TEST_VENV), str(copy)], check=True)
    prefix = subprocess.run([str(copy / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert Path(prefix) == copy and not copy.resolve().is_relative_to(TEST_VENV)
    first = run_setup(repo_root, copy)
    assert first.returncode == 0, first.stderr
    yield copy
    shutil.rmtree(copy)


def test_second_setup_only_checks(repo_root, venv):
    proc = run_setup(repo_root, venv)
    assert proc.returncode == 0, proc.stderr
    assert "installing" not in proc.stderr and "building Horovod" not in proc.stderr
    assert f"[setup_env] ok: {venv} " in proc.stderr


def test_setup_repairs_a_missing_package(repo_root, venv):
    stamp = _stamp(TEST_VENV)
    python = str(venv / "bin" / "python")
    where = subprocess.run([python, "-c", "import tqdm; print(tqdm.__file__)"], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the copy's own tqdm is the one uninstalled
    subprocess.run([python, "-m", "pip", "uninstall", "-y", "-q", "tqdm"], check=True)
    assert subprocess.run([python, "-c", "import tqdm"], capture_output=True).returncode != 0
    proc = run_setup(repo_root, venv)
    assert proc.returncode == 0, proc.stderr
    assert "repairing" in proc.stderr
    subprocess.run([python, "-c", "import tqdm"], check=True)
    # The test venv kept its package and its stamp.
    subprocess.run([sys.executable, "-c", "import tqdm"], check=True)
    assert _stamp(TEST_VENV) == stamp


def test_ci_runs_the_readme_test_command(repo_root):
    readme = (repo_root / "README.md").read_text()
    commands = re.findall(r"^```(?:bash|sh)?\n(.*?)\n```", readme, flags=re.M | re.S)
    assert commands[0].strip() == "./run_and_time.sh"
    test_command = commands[1].strip()
    ci = [line for line in (repo_root / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci == [test_command]
