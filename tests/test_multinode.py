"""Multi-node runs for real: ./run_and_time.sh across two hosts made on this machine by
tests/multinode/hosts.sh (network namespaces with their own address, host name and sshd), launched
with mpirun and with horovodrun; the proof that both nodes trained; the faults (a host that does
not answer, a node killed mid-epoch, a node without the data); and a teardown that leaves nothing.

The slow tests need root and `ip netns`: they are skipped, with the reason, only where network
namespaces cannot be created; under CI=true anything else missing (sshd, mpirun) fails them.
"""

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from compliance import mllog_records
from ssd import distributed
from ssd.data import pipeline
from ssd.data.manifest import read_manifest
from conftest import ROOT, launch, require

HOSTS_SH = ROOT / "tests" / "multinode" / "hosts.sh"
REHEARSE = ROOT / "tests" / "multinode" / "rehearse.sh"
DEMO_DATA = ROOT / "data" / "demo" / "tfrecords"
MARK = "ssd-multinode"  # in the path of every state and run directory these tests make
NODE2 = "10.213.0.2"
DEAD_HOST = "10.213.0.3"  # in the hosts' subnet, no host behind it
SEED = 1
SAME_RUN = [f"train.seed={SEED}", "data.deterministic=true", "run.log_every_steps=1"]
CURVE_STEPS = 20  # steps of the single-node run the two-node runs' loss curves are compared with
# The single-node reference: the first CURVE_STEPS steps of epoch 1, no evaluation (nothing to
# trace or score); both launchers' rehearsals train to the demo target.
SHORT_RUN = [f"train.max_steps={CURVE_STEPS}", "train.epochs=1"]
RANK_LINE = re.compile(r"rank (\d+)/(\d+) \(local \d+/\d+\) on host (\S+), netns (\S+), pid \d+: "
                       r"train shards \(of (\d+)\) by epoch (\{[^{}]*\})")  # mpirun may join two ranks' lines
WEIGHTS_LINE = re.compile(r"rank (\d+)/\d+ \(local \d+/\d+\) on host (\S+), netns \S+, pid \d+: final weights (\w+)")


# ---- the pieces, without namespaces ----

@pytest.mark.parametrize("num_ranks", [1, 2, 3, 8])
def test_train_shards_are_disjoint_and_cover_every_epoch(num_ranks):
    for epoch in range(1, 6):
        lists = [pipeline.train_shards(16, r, num_ranks, SEED, epoch) for r in range(num_ranks)]
        assert sorted(sum(lists, [])) == list(range(16))
        assert max(map(len, lists)) - min(map(len, lists)) <= 1
        assert lists == [pipeline.train_shards(16, r, num_ranks, SEED, epoch) for r in range(num_ranks)]
    assert pipeline.train_shards(16, 0, 2, SEED, 1) != pipeline.train_shards(16, 0, 2, SEED, 2)
    assert pipeline.train_shards(16, 0, 2, SEED, 1) != pipeline.train_shards(16, 0, 2, SEED + 1, 1)


def test_weights_checksum_tells_weights_apart():
    a = [tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3)), tf.Variable([1.5], dtype=tf.float32)]
    b = [tf.Variable(v.numpy()) for v in a]
    assert distributed.checksum(a) == distributed.checksum(b)
    b[1].assign(np.nextafter(b[1].numpy(), np.float32(2)))  # one ulp
    assert re.fullmatch(r"[0-9a-f]{16}", distributed.checksum(b)) and distributed.checksum(a) != distributed.checksum(b)


def test_abort_run_logs_a_single_run_stop(tmp_path):
    from ssd.mllog import MLLogger

    mll = MLLogger(str(tmp_path / "mlperf_log.txt"), rank=0, stdout=False)
    mll.abort_run()  # before run_start: nothing
    with mll.run() as run:
        mll.abort_run()
        run.success()  # too late: the run was aborted
    mll.abort_run()
    mll.close()
    stops = [e for e in mllog_events(tmp_path) if e["key"] == "run_stop"]
    assert [e["metadata"]["status"] for e in stops] == ["aborted"]
    assert [e["key"] for e in mllog_events(tmp_path)] == ["run_start", "run_stop"]


TERMINATED = """
import sys
import tensorflow as tf
from ssd import distributed
from ssd.mllog import MLLogger
mll = MLLogger(sys.argv[1], rank=0, stdout=False)
distributed.on_termination(mll.abort_run)
with mll.run():
    print("running", flush=True)
    tf.queue.FIFOQueue(1, tf.float32).dequeue()  # waits in TensorFlow forever: no Python handler runs
"""


def test_sigterm_logs_run_stop_while_the_main_thread_is_blocked(tmp_path):
    """As when a launcher ends rank 0 waiting in a collective whose peer died."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-c", TERMINATED, str(tmp_path / "mlperf_log.txt")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("running"):
            break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    stops = [e for e in mllog_events(tmp_path) if e["key"] == "run_stop"]
    assert [e["metadata"]["status"] for e in stops] == ["aborted"]


def dry_run(tmp_path, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("HOSTS", "HOSTFILE", "IFACE", "LAUNCHER", "COCO_DIR",
                                                             "DATA_DIR", "LAUNCHER_FLAGS")}
    full.update(SYSTEM="2x1xCPU", LOG_DIR=str(tmp_path / "runs"), DEMO_DIR=str(tmp_path / "demo"), **env)
    return subprocess.run([str(ROOT / "run_and_time.sh"), "--dry-run"], env=full, cwd=tmp_path, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)


@pytest.mark.parametrize("launcher", ["mpirun", "horovodrun"])
def test_launch_commands_name_the_hosts_interface_and_environment(tmp_path, launcher):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# node, slots\nnode1 slots=1\nnode2 slots=1\n")
    proc = dry_run(tmp_path, LAUNCHER=launcher, HOSTFILE=str(hostfile), OMP_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stdout
    (line,) = [ln for ln in proc.stdout.splitlines() if "ssd.train" in ln]
    if launcher == "mpirun":
        assert "mpirun --allow-run-as-root --mca btl_tcp_if_include mnet0 --mca oob_tcp_if_include mnet0" in line
        for name in ("PATH", "PYTHONPATH", "HOROVOD_GLOO_IFACE", "NCCL_SOCKET_IFNAME", "OMP_NUM_THREADS",
                     "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            assert f" -x {name} " in line
        assert f"-np 2 --hostfile {hostfile} " in line
    else:
        assert f"horovodrun --gloo --disable-cache --network-interfaces mnet0 -np 2 --hostfile {hostfile} " in line


@pytest.mark.parametrize("hostfile, message", [
    ("node1 slots=1\nnode2 slots=1\nnode3 slots=1\n", "names 3 host(s), NNODES is 2"),
    ("node1 slots=1\nnode2 slots=2\n", "host node2 has 2 slots"),
    ("node1\nnode2 slots=1\n", "host node1 has no slots"),
    (None, "does not exist"),
])
def test_host_settings_are_checked(tmp_path, hostfile, message):
    path = tmp_path / "hostfile"
    if hostfile is not None:
        path.write_text(hostfile)
    proc = dry_run(tmp_path, HOSTFILE=str(path))
    assert proc.returncode == 2 and message in proc.stdout, proc.stdout


# ---- the rehearsal: two hosts in network namespaces ----

def _netns_unavailable() -> str | None:
    """Why network namespaces cannot be created here, or None."""
    if shutil.which("ip") is None:
        return "no `ip` (iproute2)"
    name = f"ssdmn-probe-{os.getpid()}"
    proc = subprocess.run(["ip", "netns", "add", name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        return proc.stdout.strip() or f"`ip netns add` exited {proc.returncode}"
    subprocess.run(["ip", "netns", "del", name], check=True)
    return None


@pytest.fixture(scope="module")
def namespaces():
    """Skips, with the reason, where network namespaces cannot be created or a tool is missing;
    under CI=true it fails instead (CI runs as root with ./setup_env.sh's OpenMPI and sshd)."""
    reason = _netns_unavailable()
    if reason:
        reason = f"network namespaces cannot be created here (needs root): {reason}"
    else:
        missing = [tool for tool in ("/usr/sbin/sshd", "ssh", "ssh-keygen", "nsenter", "unshare", "mpirun")
                   if shutil.which(tool) is None]
        if missing:
            reason = f"{', '.join(missing)} missing (./setup_env.sh installs openssh-server and OpenMPI as root)"
    require(not reason, reason)


def leftovers(extra_marks=()) -> list[str]:
    """Namespaces, and processes other than this one, that these tests' runs could have left behind."""
    names = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, text=True, check=True).stdout
    found = [f"namespace {line.split()[0]}" for line in names.splitlines() if line.startswith("ssdmn")]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(pid) != os.getpid() and any(mark in cmdline for mark in (MARK, *extra_marks)):
            found.append(f"process {pid}: {cmdline[:200]}")
    return found


def home_ssh():
    """~/.ssh as (exists, sorted listing with sizes and mtimes): these tests must not change it."""
    path = Path.home() / ".ssh"
    if not path.exists():
        return False, []
    return True, sorted((p.name, p.stat().st_size, p.stat().st_mtime) for p in path.iterdir())


class Run:
    """A subprocess whose merged output is collected line by line with the time each line came."""

    def __init__(self, argv, env=None, cwd=ROOT):
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f"{self.proc.args} did not end within {timeout} s:\n{self.tail()}")
        self.reader.join(30)
        return self.proc.returncode

    def wait_for(self, pattern, timeout):
        """The time of the first output line matching `pattern`, waiting for it up to `timeout` s."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for when, line in list(self.lines):
                if re.search(pattern, line):
                    return when
            if self.proc.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.5)
        pytest.fail(f"no line matching {pattern!r}:\n{self.tail()}")

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def tail(self, n=80) -> str:
        return "\n".join(line for _, line in self.lines[-n:])


def mllog_events(run_dir: Path) -> list[dict]:
    return mllog_records.read_log(str(run_dir / "mlperf_log.txt"))


def step_losses(run_dir: Path) -> dict[int, float]:
    """{step: loss} from the run's TensorBoard events (train/loss, every run.log_every_steps)."""
    losses = {}
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "train/loss":
                    losses[event.step] = float(tf.make_ndarray(value.tensor))
    return losses


def rehearse(launcher: str, out_dir: Path) -> tuple[Run, Path]:
    """tests/multinode/rehearse.sh with `launcher`, from the repository root, the README's command."""
    env = dict(os.environ, LAUNCHER=launcher, LOG_DIR=str(out_dir), RUN_NAME="run")
    for name in ("HOSTS", "HOSTFILE", "IFACE", "LAUNCHER_FLAGS", "COCO_DIR", "DATA_DIR"):
        env.pop(name, None)
    run = Run([str(REHEARSE), *SAME_RUN], env=env)
    run.wait(timeout=40 * 60)
    return run, out_dir / "run"


@pytest.fixture(scope="module")
def rehearsals(namespaces, tmp_path_factory):
    """launcher -> (Run, run directory) of one rehearsal each, run on first use, with ~/.ssh checked."""
    results = {}
    ssh_before = home_ssh()

    def get(launcher):
        if launcher not in results:
            results[launcher] = rehearse(launcher, tmp_path_factory.mktemp(f"{MARK}-{launcher}"))
            assert home_ssh() == ssh_before, "~/.ssh changed"
        return results[launcher]

    return get


def assert_both_nodes_trained(out: str, run_dir: Path, epochs: int) -> None:
    """Two ranks on two hosts, disjoint shards covering the train set, one log (the final weights:
    assert_same_final_weights)."""
    # Both nodes up, the launcher given the host file and the interface.
    assert re.search(r"hosts\.sh: node1 is 10\.213\.0\.1 .*\n.*hosts\.sh: node2 is 10\.213\.0\.2 ", out), out
    # Two ranks on two distinct hosts (host names and network namespaces, neither this process's).
    ranks = {int(m[1]): m for m in RANK_LINE.finditer(out)}
    assert sorted(ranks) == [0, 1] and all(m[2] == "2" for m in ranks.values()), out
    assert {ranks[0][3], ranks[1][3]} == {"node1", "node2"}
    assert len({ranks[0][4], ranks[1][4], os.readlink("/proc/self/ns/net")}) == 3
    # Every epoch: the ranks' shard files are disjoint and cover the train set, as train_records reads them.
    num_shards = len(read_manifest(str(DEMO_DATA / "train"))["shards"])
    shards = {r: ast.literal_eval(m[6]) for r, m in ranks.items()}
    assert all(int(m[5]) == num_shards for m in ranks.values())
    assert list(shards[0]) == list(shards[1]) == list(range(1, epochs + 1))
    for epoch in shards[0]:
        assert sorted(shards[0][epoch] + shards[1][epoch]) == list(range(num_shards)), epoch
        for r in (0, 1):
            assert shards[r][epoch] == pipeline.train_shards(num_shards, r, 2, SEED, epoch)
    # One compliance log, by rank 0 alone; RESULT printed.
    events = mllog_events(run_dir)
    assert [e["key"] for e in events].count("run_start") == 1
    assert re.search(r"^RESULT,SSD_LARGE,,\d+,", out, re.M)
    # Torn down: no namespace, process, key or state directory left.
    state = re.search(r"hosts\.sh: host file (\S+)/hostfile", out)[1]
    assert not os.path.exists(state) and leftovers() == []


def assert_same_final_weights(out: str) -> None:
    """Both nodes printed the same checksum of their final model variables."""
    weights = {int(m[1]): (m[2], m[3]) for m in WEIGHTS_LINE.finditer(out)}
    assert sorted(weights) == [0, 1] and {weights[0][0], weights[1][0]} == {"node1", "node2"}, out
    assert weights[0][1] == weights[1][1], weights


LAUNCH_LINE = {"mpirun": ("+ mpirun ", "--mca btl_tcp_if_include mnet0 --mca oob_tcp_if_include mnet0"),
               "horovodrun": ("+ /", "-m ssd.horovodrun --gloo ", "--network-interfaces mnet0")}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["mpirun", "horovodrun"])
def test_across_two_nodes_reaches_the_target(rehearsals, launcher):
    run, run_dir = rehearsals(launcher)
    out = run.output
    assert run.proc.returncode == 0, run.tail()
    (launch_line,) = [ln for ln in out.splitlines() if ln.startswith("+ ") and "ssd.train" in ln]
    start, *parts = LAUNCH_LINE[launcher]
    assert launch_line.startswith(start) and "--hostfile " in launch_line
    assert all(part in launch_line for part in parts), launch_line
    # horovodrun prefixes the ranks' lines with [rank]<stdout>:
    assert re.search(r"^(\[0\]<stdout>:)?target mAP 0\.225 reached after epoch \d+", out, re.M), out
    assert re.search(r"^RESULT,SSD_LARGE,,\d+,", out, re.M), out
    assert "(the compliance check passed)" in out and "SUCCESS" in (run_dir / "compliance_check.txt").read_text()
    assert [e["metadata"]["status"] for e in mllog_events(run_dir) if e["key"] == "run_stop"] == ["success"]
    assert_both_nodes_trained(out, run_dir, epochs=12)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["mpirun", "horovodrun"])
def test_both_nodes_end_with_the_same_weights(rehearsals, launcher):
    """Bitwise, after the runs to the target (every update is compiled by XLA: ssd.optimizer)."""
    run, _ = rehearsals(launcher)
    assert_same_final_weights(run.output)


@pytest.mark.slow
def test_loss_curve_equals_a_single_node_run(rehearsals, tmp_path):
    """The per-step losses of both two-node runs equal those of 2 ranks on one node, same seed."""
    runs = {launcher: rehearsals(launcher) for launcher in ("mpirun", "horovodrun")}  # first: they make the data
    single = tmp_path / f"{MARK}-single"
    launch(["-m", "ssd.train", "--config", "demo", f"run.run_dir={single}", f"data.data_dir={DEMO_DATA}",
            "train.batch_size=16", "eval.batch_size=16", "run.progress_bar=false", *SAME_RUN, *SHORT_RUN],
           np=2, launcher="gloo", timeout=20 * 60)
    reference = step_losses(single)
    assert sorted(reference) == list(range(1, CURVE_STEPS + 1))
    for launcher, (run, run_dir) in runs.items():
        curve = step_losses(run_dir)
        assert set(reference) <= set(curve), (launcher, sorted(curve))
        np.testing.assert_allclose([curve[s] for s in sorted(reference)], [reference[s] for s in sorted(reference)],
                                   rtol=1e-4, err_msg=launcher)


# ---- teardown on every exit path ----

@pytest.mark.slow
def test_teardown_leaves_nothing_on_failure_or_signal(namespaces, tmp_path):
    ssh_before = home_ssh()
    # up fails half-way (an interface name longer than Linux allows): what it made is removed
    state = tmp_path / f"{MARK}-state"
    env = dict(os.environ, MULTINODE_IFACE="x" * 20)
    proc = subprocess.run([str(HOSTS_SH), "up", str(state)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)
    assert proc.returncode != 0 and not state.exists() and leftovers() == [], (proc.stdout, leftovers())
    # the rehearsal fails after the hosts are up (run_and_time.sh refuses the argument)
    env = dict(os.environ, LOG_DIR=str(tmp_path / f"{MARK}-runs"))
    run = Run([str(REHEARSE), "not-an-override"], env=env)
    assert run.wait(timeout=300) == 2 and "is not a section.key=value override" in run.output, run.output
    assert leftovers() == [], run.output
    # the rehearsal is terminated while it runs
    run = Run([str(REHEARSE), *SAME_RUN], env=env)
    run.wait_for(r"^system 2x1xCPU: ", timeout=300)
    start = time.monotonic()
    os.kill(run.proc.pid, signal.SIGTERM)
    assert run.wait(timeout=120) == 143 and time.monotonic() - start < 30, run.output
    assert leftovers() == [], run.output
    assert home_ssh() == ssh_before


# ---- faults, on hosts brought up once for them ----

@pytest.fixture(scope="module")
def cluster(namespaces, tmp_path_factory):
    """The two hosts (hosts.sh up); torn down at the end, leaving nothing behind."""
    state = tmp_path_factory.mktemp(f"{MARK}-faults") / "state"
    up = subprocess.run([str(HOSTS_SH), "up", str(state)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True, timeout=120)
    assert up.returncode == 0, up.stdout
    yield state
    down = subprocess.run([str(HOSTS_SH), "down", str(state)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=120)
    assert down.returncode == 0 and not state.exists() and leftovers() == [], (down.stdout, leftovers())


def run_on_node1(state: Path, out_dir: Path, *overrides, **env) -> Run:
    """./run_and_time.sh started on node1 (SYSTEM=2x1xCPU, the hosts' host file unless given)."""
    full = {k: v for k, v in os.environ.items() if k not in ("HOSTS", "IFACE", "LAUNCHER_FLAGS", "COCO_DIR",
                                                             "DATA_DIR")}
    full.update(SYSTEM="2x1xCPU", HOSTFILE=str(state / "hostfile"), LOG_DIR=str(out_dir), RUN_NAME="run")
    full.update(env)
    return Run([str(HOSTS_SH), "exec", str(state), "node1", "./run_and_time.sh", *SAME_RUN, *overrides], env=full)


def node_pids(state: Path, node: str) -> set[int]:
    ns = (state / "namespaces").read_text().split()[int(node[-1]) - 1]
    out = subprocess.run(["ip", "netns", "pids", ns], stdout=subprocess.PIPE, text=True, check=True).stdout
    return {int(p) for p in out.split()}


def sshd_pid(state: Path, node: str) -> int:
    return int((state / node / "sshd.pid").read_text())


def left_by_runs(state: Path) -> list[str]:
    """leftovers() but the hosts themselves (their namespaces and sshds)."""
    hosts = [f"namespace {ns}" for ns in (state / "namespaces").read_text().split()]
    hosts += [f"process {sshd_pid(state, node)}:" for node in ("node1", "node2")]
    return [item for item in leftovers() if not any(item.startswith(h) for h in hosts)]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["mpirun", "horovodrun"])
def test_host_that_does_not_answer_fails_the_launch_at_once(cluster, tmp_path, launcher):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text(f"10.213.0.1 slots=1\n{DEAD_HOST} slots=1\n")
    start = time.monotonic()
    run = run_on_node1(cluster, tmp_path / f"{MARK}-runs", LAUNCHER=launcher, HOSTFILE=str(hostfile))
    status = run.wait(timeout=120)
    assert time.monotonic() - start < 60
    lines = run.output.splitlines()
    assert status == 2 and len(lines) == 1, run.output
    assert f"host {DEAD_HOST} does not answer ssh" in lines[0], lines


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["mpirun", "horovodrun"])
def test_node_killed_mid_epoch_ends_the_run(cluster, tmp_path, launcher):
    out_dir = tmp_path / f"{MARK}-runs"
    run_dir = out_dir / "run"
    run = run_on_node1(cluster, out_dir, "train.checkpoint_every_steps=5", "train.epochs=1", "run.echo_mllog=true",
                       LAUNCHER=launcher)
    run.wait_for(r'"key": "epoch_start"', timeout=20 * 60)
    # Mid-epoch: a few steps done (the trainer's step checkpoints), the epoch not finished.
    end = time.monotonic() + 10 * 60
    while not list((run_dir / "checkpoints").glob("ckpt-*.index")) and time.monotonic() < end:
        time.sleep(0.5)
    victims = [pid for pid in node_pids(cluster, "node2")
               if b"ssd.train" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert victims, run.tail()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    status = run.wait(timeout=10 * 60)
    ended = run.wait_for(r"^ENDING TIMING RUN AT", timeout=1)
    assert status != 0 and ended - killed < 60, (ended - killed, run.tail())
    assert not (run_dir / "train_log.txt").exists() or "epoch 1 " not in (run_dir / "train_log.txt").read_text()
    events = mllog_events(run_dir)
    assert [e["metadata"]["status"] for e in events if e["key"] == "run_stop"] == ["aborted"], run.tail()
    # Nothing of the run left: each node runs only its sshd again.
    time.sleep(2)
    for node in ("node1", "node2"):
        assert node_pids(cluster, node) == {sshd_pid(cluster, node)}, (node, run.tail())
    assert left_by_runs(cluster) == []


@pytest.mark.slow
def test_node_without_the_data_is_named_before_run_start(cluster, tmp_path):
    """DATA_DIR on node-local storage (STATE/local) that only node1 holds."""
    local = cluster / "local" / "tfrecords"
    copy = subprocess.run([str(HOSTS_SH), "exec", str(cluster), "node1", "cp", "-r", str(DEMO_DATA), str(local)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert copy.returncode == 0, copy.stdout
    assert not local.exists()  # node-local: not on this machine's (root namespace's) file system
    out_dir = tmp_path / f"{MARK}-runs"
    run = run_on_node1(cluster, out_dir, DATA_DIR=str(local))
    status = run.wait(timeout=10 * 60)
    assert status == 2, run.output
    assert f"host {NODE2}: {local}/train/manifest.json is missing (DATA_DIR must hold the TFRecords on every node)" \
        in run.output
    assert "run_start" not in run.output and not (out_dir / "run").exists()
    assert left_by_runs(cluster) == []
