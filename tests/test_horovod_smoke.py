"""Real 2-process Horovod runs (Gloo, and MPI where OpenMPI is installed) end with identical weights."""

import numpy as np
import pytest


@pytest.mark.parametrize("launcher", ["gloo", "mpi"])
def test_two_ranks_end_identical(hvd_launch, tmp_path, launcher):
    hvd_launch(["tests/hvd_smoke.py", str(tmp_path)], np=2, launcher=launcher, timeout=300)
    r0, r1 = (np.load(tmp_path / f"rank{r}.npz") for r in (0, 1))
    assert int(r0["size"]) == 2 and int(r1["size"]) == 2
    assert bool(r0["mpi"]) == (launcher == "mpi")
    names = [k for k in r0.files if k.startswith("after")]
    # Different seeds: the ranks really started apart, so equality below is the broadcast's work.
    assert not np.allclose(r0["before0"], r1["before0"])
    for name in names:
        np.testing.assert_array_equal(r0[name], r1[name])
    # And training moved the weights away from rank 0's start.
    assert not np.allclose(r0["after0"], r0["before0"])
