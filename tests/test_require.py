"""conftest.require: a test missing coco128, a module (torch) or mpirun skips outside CI and fails under CI=true.

Each case runs the real fixtures and helpers of tests/conftest.py (loaded as a plugin) in a child pytest
on a machine made to lack the thing: SSD_COCO128 pointing nowhere, a module that does not exist, a PATH
without mpirun.
"""

import os
import subprocess
import sys

import pytest

from conftest import ROOT

_TESTS = """
from conftest import require_module


def test_needs_coco128(coco128):
    pass


def test_needs_a_module():
    require_module("ssd_no_such_module")


def test_needs_mpirun(hvd_launch):
    hvd_launch(["-c", "pass"], launcher="mpi")
"""


@pytest.mark.parametrize("ci", [True, False], ids=["CI=true", "local"])
def test_missing_requirements_fail_in_ci_and_skip_elsewhere(tmp_path, ci):
    (tmp_path / "test_needs.py").write_text(_TESTS)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(PYTHONPATH=str(ROOT / "tests"), SSD_COCO128=str(tmp_path / "nowhere"), PATH=str(tmp_path))
    if ci:
        env["CI"] = "true"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-rfs", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_needs.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == (1 if ci else 0), out
    # In CI the coco128 fixture fails at set-up: pytest counts that test as an error, not a failure.
    assert out.strip().splitlines()[-1].startswith("2 failed, 1 error" if ci else "3 skipped"), out
    for reason in ("coco128 not found at", "ssd_no_such_module is not installed", "OpenMPI (mpirun) is not installed"):
        assert ("CI=true and " + reason if ci else reason) in out, out
