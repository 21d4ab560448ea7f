"""The background scorer: COCO scoring in a separate process on rank 0, off the critical path.

    scorer = Scorer(gt_json, backend, out_json)   # during init: the process loads the ground truth
    scorer.ready()                                # once; this waits for it (errors surface here)
    scorer.submit(epoch, detections, image_ids)   # after an evaluation's inference: sends, returns
    scorer.poll()                                 # a Score when it is done, else None; never blocks
    scorer.wait()                                 # blocks until the Score, watching the process
    scorer.close()                                # after run_stop: the last detections.json is written

Why a process: COCOeval is Python and numpy (pycocotools' per-image loop: 55 s for 5000 images);
in a thread it would hold the GIL against the training loop. The process is a plain
`python -m ssd.scorer` that imports numpy and the COCO backend only (0.5 s to start; a
multiprocessing spawn child would re-import the trainer's module, TensorFlow and Horovod: 4.7
CPU-seconds). The two talk through a socket pair in pickled messages (multiprocessing.connection):
one evaluation's arrays are one message (28 MB for 500k detections).

In the scorer, per evaluation: the detections ordered by image id, `coco_eval.coco_stats` against
the ground truth loaded once, the Score sent back, then `out_json` written (COCO results format).

Failure: the process dying (killed, out of memory), an exception in it, or no answer within
TIMEOUT_SECONDS raises ScorerFailed with a one-line message. No call blocks on a dead process:
every read is a poll with a timeout and a liveness check, and a dead peer reads as end of file.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection

import numpy as np

from ssd import coco_eval

TIMEOUT_SECONDS = 600.0  # the longest wait for an answer (Horovod's stall shutdown, ssd.distributed)
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ScorerFailed(RuntimeError):
    """The background scorer died, raised or stopped answering; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Score:
    epoch: int  # the evaluation after this epoch
    stats: np.ndarray  # [12] float64, coco_eval.STAT_NAMES order
    seconds: float  # in the scorer, from receiving the arrays to the stats


class Scorer:
    """The parent's handle on the scorer process (see the module docstring); one scoring at a time.

    gt_json: the instances JSON of the val split. backend: coco_eval.BACKENDS. out_json: where each
    evaluation's detections are written ('' or None: nowhere). debug_delay: seconds the scorer
    sleeps before each scoring (eval.debug_scoring_delay: tests kill it mid-scoring).
    """

    def __init__(self, gt_json: str, backend: str, out_json: str | None = None, debug_delay: float = 0.0):
        ours, theirs = socket.socketpair()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (_REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
        argv = [sys.executable, "-m", "ssd.scorer", str(theirs.fileno()), gt_json, backend, out_json or "",
                str(debug_delay)]
        self.process = subprocess.Popen(argv, pass_fds=[theirs.fileno()], env=env)
        theirs.close()
        self.conn = Connection(ours.detach())
        self.pending: int | None = None  # the epoch being scored

    def ready(self, timeout: float = TIMEOUT_SECONDS) -> int:
        """Waits until the scorer has loaded the ground truth; returns its number of images."""
        message = self._receive(timeout)
        if message is None:
            raise ScorerFailed(f"scorer: the ground truth was not loaded within {timeout:.0f} s")
        if message[0] == "error":
            raise ScorerFailed(f"scorer: {message[2]}")
        return message[1]

    def submit(self, epoch: int, detections: np.ndarray, image_ids: np.ndarray) -> None:
        """Hands over an evaluation: detections [N, 7] (coco_eval.detection_array rows, any order)
        and the image ids [M] that went through inference. Returns once the scorer has them."""
        if self.pending is not None:
            raise RuntimeError(f"scorer: the evaluation after epoch {self.pending} is still being scored")
        try:
            self.conn.send(("score", epoch, detections, image_ids))
        except OSError:
            raise self._died() from None
        self.pending = epoch

    def poll(self) -> Score | None:
        """The pending evaluation's Score if it is done (then nothing is pending), else None."""
        return self._answer(self._receive(0.0)) if self.pending is not None else None

    def wait(self, timeout: float = TIMEOUT_SECONDS) -> Score:
        """The pending evaluation's Score, waiting for it up to `timeout` seconds."""
        if self.pending is None:
            raise RuntimeError("scorer: nothing is being scored")
        message = self._receive(timeout)
        if message is None:
            raise ScorerFailed(f"scorer: no score for the evaluation after epoch {self.pending} "
                               f"within {timeout:.0f} s")
        return self._answer(message)

    def close(self, timeout: float = 120.0) -> None:
        """Lets the scorer finish (its last detections.json) and exit; kills it after `timeout` s."""
        if self.process.poll() is None:
            try:
                self.conn.send(None)
                self.process.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
        self.process.wait()
        self.conn.close()

    def kill(self) -> None:
        """Ends the scorer at once (the run is aborting)."""
        self.process.kill()
        self.process.wait()
        self.conn.close()

    def _answer(self, message) -> Score | None:
        if message is None:
            return None
        kind, epoch, *rest = message
        if kind == "error":
            raise ScorerFailed(f"scorer: the evaluation after epoch {epoch} failed: {rest[0]}")
        self.pending = None
        return Score(epoch, np.asarray(rest[0], np.float64), rest[1])

    def _receive(self, timeout: float):
        """The next message, None when none came within `timeout` s; ScorerFailed when the process is gone."""
        deadline = time.monotonic() + timeout
        while True:
            if self.conn.poll(max(0.0, min(1.0, deadline - time.monotonic()))):
                try:
                    return self.conn.recv()
                except (EOFError, OSError):
                    raise self._died() from None
            if self.process.poll() is not None:
                raise self._died()
            if time.monotonic() >= deadline:
                return None

    def _died(self) -> ScorerFailed:
        try:
            code = self.process.wait(10)
        except subprocess.TimeoutExpired:  # it closed its end but lives on: end it
            self.process.kill()
            code = self.process.wait()
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        during = f" while scoring the evaluation after epoch {self.pending}" if self.pending is not None else ""
        return ScorerFailed(f"scorer: the scoring process (pid {self.process.pid}) {how}{during}")


def serve(conn: Connection, gt_json: str, backend: str, out_json: str, debug_delay: float) -> None:
    """The scorer process: load the ground truth, then score each evaluation sent until None or EOF."""
    try:
        gt = coco_eval.load_ground_truth(gt_json, backend)
    except Exception as err:  # reported to the trainer, which stops during init
        conn.send(("error", None, f"{gt_json}: {type(err).__name__}: {err}"))
        return
    conn.send(("ready", len(gt.coco.getImgIds())))
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the trainer is gone
            return
        if job is None:
            return
        _, epoch, detections, image_ids = job
        start = time.perf_counter()
        time.sleep(debug_delay)
        detections = coco_eval.order_by_image(detections)
        try:
            stats = coco_eval.coco_stats(gt, detections, image_ids=image_ids)
            conn.send(("score", epoch, stats.tolist(), time.perf_counter() - start))
        except Exception as err:
            conn.send(("error", epoch, f"{type(err).__name__}: {err}"))
        if out_json:
            coco_eval.write_records(coco_eval.to_records(detections), out_json)


def main(argv: list[str]) -> None:
    """python -m ssd.scorer FD GT_JSON BACKEND OUT_JSON DEBUG_DELAY (started by Scorer, not by hand)."""
    fd, gt_json, backend, out_json, debug_delay = argv
    serve(Connection(int(fd)), gt_json, backend, out_json, float(debug_delay))


if __name__ == "__main__":
    main(sys.argv[1:])
