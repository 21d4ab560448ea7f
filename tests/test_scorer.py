"""The background scorer (ssd/scorer.py): a real `python -m ssd.scorer` process scoring coco128's
ground truth gives coco_stats' numbers; its death, its errors and its silence end in ScorerFailed."""

import json
import os
import signal
import time

import numpy as np
import pytest

from ssd import coco_eval
from ssd.scorer import Scorer, ScorerFailed
from test_coco_eval import _as_outputs, _perturb


@pytest.fixture(scope="module")
def evaluation(coco128):
    """(gt path, detections [N, 7], image ids) of a perturbed copy of coco128's ground truth."""
    path = coco128 / "annotations" / "instances_train2017.json"
    outputs, category_ids = _as_outputs(json.loads(path.read_text()), _perturb)
    return str(path), coco_eval.detection_array(category_ids=category_ids, **outputs), outputs["image_ids"]


@pytest.mark.parametrize("backend", coco_eval.BACKENDS)
def test_scores_as_coco_stats_and_writes_the_detections(evaluation, tmp_path, backend):
    path, detections, image_ids = evaluation
    scorer = Scorer(path, backend, out_json=str(tmp_path / "detections.json"))
    try:
        assert scorer.ready() == 128
        assert scorer.poll() is None  # nothing submitted
        shuffled = detections[np.random.default_rng(0).permutation(len(detections))]  # as gathered from ranks
        for epoch in (3, 4):  # the ground truth is loaded once, for every evaluation
            scorer.submit(epoch, shuffled, image_ids)
            score = scorer.wait()
            assert score.epoch == epoch and scorer.pending is None
            np.testing.assert_array_equal(score.stats, coco_eval.coco_stats(path, detections, backend))
    finally:
        scorer.close()
    assert scorer.process.returncode == 0
    written = json.loads((tmp_path / "detections.json").read_text())
    assert written == coco_eval.to_records(coco_eval.order_by_image(shuffled))


def test_poll_returns_the_score_once_it_is_known(evaluation):
    path, detections, image_ids = evaluation
    scorer = Scorer(path, "faster_coco_eval", debug_delay=1.0)
    try:
        scorer.ready()
        scorer.submit(1, detections, image_ids)
        assert scorer.poll() is None  # still waiting out its delay
        deadline = time.monotonic() + 120
        while (score := scorer.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert score is not None and score.epoch == 1 and score.seconds >= 1.0
        with pytest.raises(RuntimeError, match="nothing is being scored"):
            scorer.wait()
    finally:
        scorer.close()


def test_an_error_in_the_scorer_is_reported_with_its_message(evaluation):
    path, detections, image_ids = evaluation
    scorer = Scorer(path, "faster_coco_eval")
    try:
        scorer.ready()
        scorer.submit(2, detections, image_ids[1:])  # one image missing from the inference
        with pytest.raises(ScorerFailed, match=r"the evaluation after epoch 2 failed: ValueError: the evaluated "
                                               r"images do not match .*instances_train2017.json .*1 missing"):
            scorer.wait()
    finally:
        scorer.kill()


def test_a_killed_scorer_fails_without_a_hang(evaluation):
    path, detections, image_ids = evaluation
    scorer = Scorer(path, "faster_coco_eval", debug_delay=600)
    scorer.ready()
    scorer.submit(5, detections, image_ids)
    os.kill(scorer.process.pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(ScorerFailed, match=rf"the scoring process \(pid {scorer.process.pid}\) was killed by "
                                           r"SIGKILL while scoring the evaluation after epoch 5"):
        scorer.wait()
    assert time.monotonic() - start < 10
    scorer.kill()


def test_silence_and_a_bad_ground_truth_are_failures(evaluation, tmp_path):
    path, detections, image_ids = evaluation
    scorer = Scorer(path, "faster_coco_eval", debug_delay=600)
    try:
        scorer.ready()
        scorer.submit(7, detections, image_ids)
        with pytest.raises(ScorerFailed, match="no score for the evaluation after epoch 7 within 1 s"):
            scorer.wait(timeout=1.0)
    finally:
        scorer.kill()
    broken = tmp_path / "instances.json"
    broken.write_text("{not json")
    scorer = Scorer(str(broken), "faster_coco_eval")
    with pytest.raises(ScorerFailed, match=rf"scorer: {broken}: JSONDecodeError"):
        scorer.ready()
    scorer.close()
