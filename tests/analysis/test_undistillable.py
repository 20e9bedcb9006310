"""Undistillable-class detection on hand-built predictions, and end to end with a teacher that lies about one class."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.analysis.undistillable import (class_gain, confusion_matrix, confusion_shift, per_class_accuracy,
                                          shift_destinations, teacher_class_profile, undistillable_classes)
from kdlab.data.synthetic import GaussianMixture
from kdlab.losses import build

# 3 classes x 10 test samples each
LABELS = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)


def _predictions(correct_per_class: list[int], wrong_to: list[int]) -> torch.Tensor:
    """Predictions where the first correct_per_class[c] samples of class c are right, the rest go to wrong_to[c]."""
    pred = []
    for c, (k, w) in enumerate(zip(correct_per_class, wrong_to)):
        pred += [c] * k + [w] * (10 - k)
    return torch.tensor(pred)


def _seeds(rows):
    return torch.stack([_predictions(*row) for row in rows])


# CE students (3 seeds) and KD students whose teacher misleads class 1 into class 2: class 1 loses 4, 5, 6 samples
CE = _seeds([([8, 9, 7], [1, 0, 0]), ([7, 9, 8], [1, 0, 0]), ([8, 8, 7], [1, 0, 0])])
KD = _seeds([([9, 5, 8], [1, 2, 0]), ([7, 4, 8], [1, 2, 0]), ([8, 2, 8], [1, 2, 0])])


def test_per_class_accuracy_and_confusion_by_hand():
    assert per_class_accuracy(CE[0], LABELS, 3).tolist() == [0.8, 0.9, 0.7]
    assert per_class_accuracy(KD, LABELS, 3)[:, 1].tolist() == [0.5, 0.4, 0.2]
    m = confusion_matrix(KD[0], LABELS, 3)
    assert m.tolist() == [[0.9, 0.1, 0.0], [0.0, 0.5, 0.5], [0.2, 0.0, 0.8]]
    assert math.isnan(per_class_accuracy(torch.tensor([0, 0]), torch.tensor([0, 0]), 3)[1])


def test_misleading_teacher_for_one_class_is_detected_exactly_with_the_t_interval():
    gain = class_gain(KD, CE, LABELS, 3, interval="t")
    # class 1: per-seed gains -0.4, -0.5, -0.6 -> mean -0.5, sd 0.1, half = t(0.975, 2) * sd / sqrt(3) = 0.2484
    assert gain.per_seed[0] == pytest.approx([0.1, -0.4, 0.1])
    assert gain.mean[1] == pytest.approx(-0.5) and gain.std[1] == pytest.approx(0.1)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert (gain.low[1], gain.high[1]) == (pytest.approx(-0.5 - half), pytest.approx(-0.5 + half))
    assert gain.n_seeds == 3 and gain.num_samples == [10, 10, 10]
    assert undistillable_classes(gain) == [1]
    # a threshold above the loss the interval guarantees removes it: high = -0.2516
    assert undistillable_classes(gain, threshold=0.25) == [1]
    assert undistillable_classes(gain, threshold=0.26) == []


def test_confusion_shift_says_where_the_lost_samples_go():
    shift = confusion_shift(KD, CE, LABELS, 3)
    # class 1 under CE: 0.9, 0.9, 0.8 right and the rest to class 0; under KD: 0.5, 0.4, 0.2 right, the rest to 2
    assert shift[1].tolist() == pytest.approx([-(0.1 + 0.1 + 0.2) / 3, -0.5, (0.5 + 0.6 + 0.8) / 3])
    assert shift.sum(dim=1).tolist() == pytest.approx([0, 0, 0], abs=1e-12)
    assert shift_destinations(shift, 1) == [{"class": 2, "shift": pytest.approx(1.9 / 3)}]


def test_no_misleading_class_reports_none():
    # KD = CE +- one sample per class, in both directions across seeds: no class is reliably worse
    kd = _seeds([([9, 8, 7], [1, 0, 0]), ([6, 9, 9], [1, 0, 0]), ([8, 9, 6], [1, 0, 0])])
    gain = class_gain(kd, CE, LABELS, 3, interval="t")
    assert undistillable_classes(gain) == []
    assert undistillable_classes(class_gain(CE, CE, LABELS, 3, interval="bootstrap")) == []


def test_one_seed_gives_no_t_interval_and_so_no_detection():
    gain = class_gain(KD[:1], CE[:1], LABELS, 3, interval="t")
    assert gain.mean[1] == pytest.approx(-0.4) and all(math.isnan(h) for h in gain.high)
    assert gain.std == [0.0, 0.0, 0.0]
    assert undistillable_classes(gain) == []


def test_bootstrap_interval_matches_the_normal_approximation_for_one_seed():
    # one seed, 400 samples of class 0: KD loses 200 of them that CE gets right -> d = -1 on half, 0 on half;
    # the resampled mean has sd 0.5 / sqrt(400) = 0.025, so the 95% interval is about -0.5 +- 0.049
    labels = torch.tensor([0] * 400 + [1] * 400)
    ce = labels.clone().unsqueeze(0)
    kd = ce.clone()
    kd[0, :200] = 1
    gain = class_gain(kd, ce, labels, 2, interval="bootstrap", num_bootstrap=4000, seed=1)
    assert gain.mean[0] == pytest.approx(-0.5)
    assert gain.low[0] == pytest.approx(-0.549, abs=0.01) and gain.high[0] == pytest.approx(-0.451, abs=0.01)
    assert (gain.low[1], gain.high[1]) == (0.0, 0.0)  # class 1 never changes
    assert undistillable_classes(gain) == [0]
    again = class_gain(kd, ce, labels, 2, interval="bootstrap", num_bootstrap=4000, seed=1)
    assert again == gain  # seeded


def test_bootstrap_detects_the_misleading_class_over_three_seeds():
    gain = class_gain(KD, CE, LABELS, 3, interval="bootstrap", num_bootstrap=2000)
    assert undistillable_classes(gain) == [1]
    assert gain.low[1] <= gain.mean[1] <= gain.high[1]


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="kd_predictions"):
        class_gain(KD[:, :5], CE, LABELS, 3)
    with pytest.raises(ValueError, match="same shape"):
        class_gain(KD[:2], CE, LABELS, 3)
    with pytest.raises(ValueError, match="interval='z'"):
        class_gain(KD, CE, LABELS, 3, interval="z")
    with pytest.raises(ValueError, match="labels must lie"):
        class_gain(KD, CE, LABELS + 1, 3)
    with pytest.raises(ValueError, match="threshold"):
        undistillable_classes(class_gain(KD, CE, LABELS, 3), threshold=-0.1)


def test_teacher_class_profile_by_hand():
    # class 0 samples: logits favour class 0 (right); class 1 samples: one right, one wrong
    logits = torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [2.0, 0.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    profile = teacher_class_profile(logits, labels, [1], temperature=1.0)
    p_right = math.exp(2) / (math.exp(2) + 2)
    assert profile["per_class"]["accuracy"] == [1.0, 0.5, None]
    assert profile["classes"]["1"]["target_prob"] == pytest.approx((p_right + (1 - p_right) / 2) / 2)
    assert profile["mean_over_classes"]["accuracy"] == pytest.approx(0.75)


# ---------------------------------------------------------------------------------------------- end to end


@pytest.fixture
def one_thread():
    """Tiny models on a shared, busy machine: one intra-op thread is ~10x faster than several contending ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train_linear(x, y, teacher_logits, loss, seed, epochs=10, batch=100):
    """A linear student trained with SGD on minibatches whose order and init depend only on ``seed`` (paired)."""
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    with torch.no_grad():
        model.weight.copy_(torch.randn(model.weight.shape, generator=g) * 0.1)
        model.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss(model(x[idx]), teacher_logits[idx], y[idx]).backward()
            opt.step()
    return model


def test_end_to_end_gaussian_mixture_teacher_lying_about_one_class_then_tllm_repairs_it(one_thread):
    mixture = GaussianMixture(num_classes=4, dim=8, separation=4.0, seed=0)
    x, y = mixture.sample(1000, torch.Generator().manual_seed(1))
    x_test, y_test = mixture.sample(2000, torch.Generator().manual_seed(2))
    # the Bayes-optimal teacher, except that on class-2 samples it swaps its class-2 and class-3 logits
    teacher = mixture.bayes_posterior(x).log().float()
    lie = y == 2
    teacher[lie] = teacher[lie][:, [0, 1, 3, 2]]
    kd_loss, ce_loss = build("kd", temperature=4.0, alpha=0.9), build("ce")
    tllm_loss = build("tllm", temperature=4.0, alpha=0.9, undistillable_classes=[2])

    def predictions(loss):
        models = [_train_linear(x, y, teacher, loss, s) for s in range(3)]
        with torch.no_grad():
            return torch.stack([m(x_test).argmax(1) for m in models])

    kd, ce, tllm = predictions(kd_loss), predictions(ce_loss), predictions(tllm_loss)
    gain = class_gain(kd, ce, y_test, 4, interval="t")
    # other classes move by at most a few tenths of a point; 2 points is the least loss worth reporting here
    assert undistillable_classes(gain, threshold=0.02) == [2]
    assert gain.mean[2] < -0.2
    assert shift_destinations(confusion_shift(kd, ce, y_test, 4), 2)[0]["class"] == 3
    # the remedy: without the teacher on class 2, class 2 is back to the CE student's level
    repaired = class_gain(tllm, ce, y_test, 4, interval="t")
    assert abs(repaired.mean[2]) < 0.02 and undistillable_classes(repaired, threshold=0.02) == []
