"""Video IS: the score against a hand computation, splits/shuffle protocols, the C3D loaders and preprocessing."""

import math

import numpy as np
import pytest
import torch

from kandinsky_video.evaluation.c3d import C3D, load_c3d, tgan2_preprocess
from kandinsky_video.evaluation.inception_score import IS_PROTOCOLS, classifier_probabilities, inception_score
from kandinsky_video.evaluation.testing import tiny_c3d


def hand_inception_score(rows: list[list[float]]) -> float:
    """exp(mean_x sum_y p(y|x) (log p(y|x) - log p(y))) with plain Python loops."""
    classes = len(rows[0])
    marginal = [sum(row[c] for row in rows) / len(rows) for c in range(classes)]
    kl = [sum(p * (math.log(p) - math.log(marginal[c])) for c, p in enumerate(row) if p > 0) for row in rows]
    return math.exp(sum(kl) / len(kl))


@pytest.fixture
def probabilities():
    logits = np.random.default_rng(0).normal(0, 2, size=(40, 7))
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def test_single_split_matches_hand_computation(probabilities):
    mean, std = inception_score(probabilities, num_splits=1)
    assert mean == pytest.approx(hand_inception_score(probabilities.tolist()), rel=1e-9) and std == 0.0


def test_tgan2_splits_are_consecutive_loops(probabilities):
    protocol = IS_PROTOCOLS["tgan2"]
    scores = [hand_inception_score(probabilities[i * 4 : (i + 1) * 4].tolist()) for i in range(10)]
    mean, std = inception_score(probabilities, protocol.num_splits, protocol.shuffle_seed)
    assert (mean, std) == pytest.approx((np.mean(scores), np.std(scores)), rel=1e-9)


def test_styleganv_shuffles_with_randomstate_42(probabilities):
    protocol = IS_PROTOCOLS["styleganv"]
    shuffled = probabilities.copy()
    np.random.RandomState(42).shuffle(shuffled)
    scores = [hand_inception_score(shuffled[i * 4 : (i + 1) * 4].tolist()) for i in range(10)]
    mean, std = inception_score(probabilities, protocol.num_splits, protocol.shuffle_seed)
    assert (mean, std) == pytest.approx((np.mean(scores), np.std(scores)), rel=1e-9)


def test_bounds_one_for_identical_predictions_and_classes_for_confident_uniform():
    assert inception_score(np.full((8, 5), 0.2))[0] == pytest.approx(1.0)
    assert inception_score(np.eye(5))[0] == pytest.approx(5.0)  # zeros: 0 log 0 = 0, no NaN


def test_c3d_pool5_gives_fc6_its_4x4_map():
    c3d = C3D(width_divisor=16)
    assert c3d(torch.zeros(2, 3, 16, 112, 112)).shape == (2, 101)  # fc6 would reject any other flattened size


def test_tgan2_preprocessing_is_bgr_times_128_minus_mean():
    video = torch.rand(1, 3, 16, 112, 112) * 2 - 1  # already 112: the aligned-corner resize is the identity
    mean = torch.rand(3, 16, 112, 112) * 100
    expected = 128 * (video[:, [2, 1, 0]] + 1) - mean
    torch.testing.assert_close(tgan2_preprocess(video, mean), expected)


def test_tgan2_npz_files_load_into_the_same_classifier(tmp_path):
    """Chainer-named npz weights + mean2.npz give exactly the tiny classifier they were written from."""
    classifier = tiny_c3d()
    arrays = {}
    for key, value in classifier.c3d.state_dict().items():
        layer, leaf = key.split(".")
        arrays[f"{layer}/{'W' if leaf == 'weight' else 'b'}"] = value.numpy()
    np.savez(tmp_path / "conv3d_deepnetA_ucf.npz", **arrays)
    mean = np.zeros((3, 16, 128, 171), np.float32)
    mean[:, :, 8:120, 8:120] = classifier.mean_crop.numpy()
    np.savez(tmp_path / "mean2.npz", mean=mean)
    loaded = load_c3d(tmp_path / "conv3d_deepnetA_ucf.npz", tmp_path / "mean2.npz")
    clips = [np.random.default_rng(i).integers(0, 256, (16, 64, 80, 3), dtype=np.uint8) for i in range(3)]
    expected = classifier_probabilities(classifier, clips, batch_size=2)
    np.testing.assert_allclose(classifier_probabilities(loaded, clips, batch_size=2), expected, rtol=1e-6)
    np.testing.assert_allclose(expected.sum(1), 1.0, rtol=1e-6)


def test_missing_c3d_files_name_their_sources_and_flags(tmp_path):
    with pytest.raises(FileNotFoundError, match="--c3d-weights.*conv3d_deepnetA_ucf.npz.*c3d_ucf101.pt"):
        load_c3d(None)
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="--c3d-mean"):
        load_c3d(tmp_path / "weights.npz")
