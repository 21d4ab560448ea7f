"""Horovod setup: one process per GPU (or per CPU slot), the same code under 1 or N processes.

    world = distributed.init()        # before any other TensorFlow work
    ...
    distributed.broadcast(model.variables + optimizer.variables)

Every collective of the project lives here. The numpy ones (`allgather`, `broadcast_vector`) also
work without Horovod initialised (one process, e.g. `ssd.evaluate` in a test): they return their input.

`init` runs `hvd.init()`, pins this process to the GPU of its local rank with memory growth on,
splits the CPU threads between the local processes when there is no GPU, and sets Horovod's
timeouts so that a rank that dies or stalls ends the whole job instead of hanging it: horovodrun
and mpirun terminate every rank when one exits non-zero, and a collective that waits longer than
HOROVOD_STALL_SHUTDOWN_TIME_SECONDS (default here 600 s: longer than a COCO scoring on rank 0)
shuts Horovod down on the ranks still waiting. Values set in the environment win.
"""

import dataclasses
import hashlib
import os
import signal
import socket
import sys
import threading

import numpy as np

import horovod.tensorflow as hvd
import tensorflow as tf

# Seconds; setdefault, so a launcher's or user's values take precedence.
_HOROVOD_TIMEOUTS = {
    "HOROVOD_GLOO_TIMEOUT_SECONDS": "120",  # Gloo rendezvous and context operations
    "HOROVOD_STALL_CHECK_TIME_SECONDS": "60",  # warn about ranks missing from a collective
    "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": "600",  # then give up and shut down
}


@dataclasses.dataclass(frozen=True)
class World:
    rank: int  # global rank, 0 writes logs and checkpoints
    size: int  # number of processes
    local_rank: int  # rank on this node: the GPU index
    local_size: int


def init() -> World:
    """Initialises Horovod and this process's devices; call once, first."""
    for key, value in _HOROVOD_TIMEOUTS.items():
        os.environ.setdefault(key, value)
    hvd.init()
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if gpus:
        if hvd.local_rank() >= len(gpus):
            raise RuntimeError(f"local rank {hvd.local_rank()} has no GPU: {len(gpus)} visible on this node "
                               f"for {hvd.local_size()} processes")
        tf.config.set_visible_devices(gpus[hvd.local_rank()], "GPU")
    elif "TF_NUM_INTRAOP_THREADS" not in os.environ:
        # CPU training: the local processes share the cores instead of each using all of them.
        # TensorFlow fixes its thread pools when its context starts (e.g. at a module-level
        # tf.constant), so this must run before; otherwise it says so and leaves them.
        threads = max(1, (os.cpu_count() or 1) // hvd.local_size())
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
        except RuntimeError:
            print(f"ssd.distributed: TensorFlow already started; set TF_NUM_INTRAOP_THREADS={threads} "
                  f"for {hvd.local_size()} processes on {os.cpu_count()} cores", file=sys.stderr)
    return World(hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size())


def broadcast(variables, root_rank: int = 0) -> None:
    """Sets `variables` (a list of tf.Variable) on every rank to root_rank's values."""
    hvd.broadcast_variables(list(variables), root_rank=root_rank)


def broadcast_object(value, name: str, root_rank: int = 0):
    """root_rank's `value` (any picklable Python object) on every rank."""
    return hvd.broadcast_object(value, root_rank=root_rank, name=name)


def average(variables) -> None:
    """Sets each of `variables` to its mean over the ranks (e.g. batch-norm moving statistics), in
    one grouped collective."""
    variables = list(variables)
    for v, mean in zip(variables, hvd.grouped_allreduce(variables, op=hvd.Average, name="average")):
        v.assign(mean)


def _one_process() -> bool:
    return not hvd.is_initialized() or hvd.size() == 1


def allgather(array: np.ndarray, name: str) -> np.ndarray:
    """Every rank's numpy array concatenated along axis 0 in rank order (the arrays may differ in
    length); the array itself in one process."""
    if _one_process():
        return array
    return hvd.allgather(tf.constant(array), name=name).numpy()


def broadcast_vector(values: np.ndarray, name: str, root_rank: int = 0) -> np.ndarray:
    """root_rank's float64 vector on every rank (e.g. an evaluation's result); itself in one process."""
    values = np.asarray(values, np.float64)
    if _one_process():
        return values
    return hvd.broadcast(tf.constant(values), root_rank=root_rank, name=name).numpy()


def barrier() -> None:
    """Returns once every rank has called it (a tiny allreduce)."""
    hvd.allreduce(tf.constant(0.0), name="barrier")


def allreduce_mean(value):
    """The mean of a tensor over ranks (graph-safe; identical on every rank)."""
    return hvd.allreduce(value, op=hvd.Average)


def gradient_tape(tape, fp16_compression: bool = False):
    """Wraps a tf.GradientTape so that `gradient()` returns gradients averaged over the ranks."""
    compression = hvd.Compression.fp16 if fp16_compression else hvd.Compression.none
    return hvd.DistributedGradientTape(tape, compression=compression)


def on_termination(callback) -> None:
    """On SIGTERM, runs callback() in a thread of its own, then exits with status 143.

    Launchers end every rank with SIGTERM (then SIGKILL) when one rank dies. The main thread may
    then be waiting inside a collective that never returns (Horovod's MPI operations wait forever
    for a dead peer), where no Python signal handler can run; Python's C-level handler still writes
    the signal number to the wakeup fd, which wakes the thread that calls callback().
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)  # the wakeup fd's thread acts

    def watch():
        while os.read(read_fd, 1) != bytes([signal.SIGTERM]):  # other signals' numbers come too
            pass
        try:
            callback()
        finally:
            os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="on_termination", daemon=True).start()


def describe(world: World) -> str:
    """'rank R/N (local r/n) on host H, netns net:[inode], pid P': where this process runs, for the
    log line each rank prints at start (the network namespace tells simulated hosts apart)."""
    try:
        netns = os.readlink("/proc/self/ns/net")
    except OSError:
        netns = "unknown"
    return (f"rank {world.rank}/{world.size} (local {world.local_rank}/{world.local_size}) on host "
            f"{socket.gethostname()}, netns {netns}, pid {os.getpid()}")


def checksum(variables) -> str:
    """The first 16 hex digits of the SHA-256 of the variables' values (bytes, in order): the same
    on ranks that hold the same weights, and (but for a 2**-64 chance) different otherwise."""
    digest = hashlib.sha256()
    for v in variables:
        digest.update(v.numpy().tobytes())
    return digest.hexdigest()[:16]
