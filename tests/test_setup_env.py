"""setup_env.sh: idempotent, repairs a broken environment; .ci/run is exactly the README's test command."""

import re
import subprocess
import sys
from pathlib import Path

VENV_PYTHON = Path(sys.executable)


def run_setup(repo_root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["./setup_env.sh", "--test"], cwd=repo_root, capture_output=True, text=True, timeout=1800)


def test_second_setup_only_checks(repo_root):
    proc = run_setup(repo_root)
    assert proc.returncode == 0, proc.stderr
    assert "installing" not in proc.stderr and "building Horovod" not in proc.stderr
    assert "[setup_env] ok:" in proc.stderr


def test_setup_repairs_a_missing_package(repo_root):
    subprocess.run([str(VENV_PYTHON), "-m", "pip", "uninstall", "-y", "-q", "tqdm"], check=True)
    broken = subprocess.run([str(VENV_PYTHON), "-c", "import tqdm"], capture_output=True)
    assert broken.returncode != 0
    proc = run_setup(repo_root)
    assert proc.returncode == 0, proc.stderr
    assert "repairing" in proc.stderr
    subprocess.run([str(VENV_PYTHON), "-c", "import tqdm"], check=True)


def test_ci_runs_the_readme_test_command(repo_root):
    readme = (repo_root / "README.md").read_text()
    commands = re.findall(r"^```(?:bash|sh)?\n(.*?)\n```", readme, flags=re.M | re.S)
    assert commands[0].strip() == "./run_and_time.sh"
    test_command = commands[1].strip()
    ci = [line for line in (repo_root / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci == [test_command]
