"""Dark-knowledge statistics against values computed by hand with python math."""

from __future__ import annotations

import json
import math

import pytest
import torch

from kdlab.analysis import (
    DarkKnowledgeAccumulator,
    dark_knowledge_metrics,
    derived_average_per_sample,
    derived_std_per_sample,
    inherent_variance_per_sample,
    nongt_entropy_per_sample,
    nongt_logits,
    nongt_probabilities,
    target_probability_per_sample,
)

E = math.e


def three_class_by_hand(tau: float) -> dict[str, float]:
    """logits [2, 1, 0], y = 0 at temperature tau, from the definitions."""
    w = [math.exp(2 / tau), math.exp(1 / tau), math.exp(0.0)]
    s = sum(w)
    p = [v / s for v in w]
    nongt = p[1:]
    mean = sum(nongt) / 2
    std = math.sqrt(sum((v - mean) ** 2 for v in nongt) / 2)  # population std
    q = [v / sum(nongt) for v in nongt]
    entropy = -sum(v * math.log(v) for v in q) / math.log(2)
    return {"derived_average": mean, "derived_std": std, "nongt_entropy": entropy, "target_prob": p[0]}


def test_three_class_case_by_hand_at_two_temperatures() -> None:
    z = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0])
    # closed forms at tau = 1 as a second check of the helper above
    s1 = E**2 + E + 1
    assert three_class_by_hand(1.0)["derived_average"] == pytest.approx((E + 1) / s1 / 2)
    assert three_class_by_hand(1.0)["derived_std"] == pytest.approx((E - 1) / s1 / 2)
    for tau in (1.0, 2.0):
        want = three_class_by_hand(tau)
        assert derived_average_per_sample(z, y, tau).item() == pytest.approx(want["derived_average"], rel=1e-12)
        assert derived_std_per_sample(z, y, tau).item() == pytest.approx(want["derived_std"], rel=1e-12)
        assert nongt_entropy_per_sample(z, y, tau).item() == pytest.approx(want["nongt_entropy"], rel=1e-12)
        assert target_probability_per_sample(z, y, tau).item() == pytest.approx(want["target_prob"], rel=1e-12)
    assert inherent_variance_per_sample(z, y).item() == pytest.approx(0.25)  # population variance of [1, 0]

    result = dark_knowledge_metrics(z, y, temperatures=(1, 2))
    assert set(result["per_temperature"]) == {"1.0", "2.0"}
    for key, tau in (("1.0", 1.0), ("2.0", 2.0)):
        for name, value in three_class_by_hand(tau).items():
            assert result["per_temperature"][key][name] == pytest.approx(value, rel=1e-12)
    assert result["inherent_variance"] == pytest.approx(0.25)
    assert result["accuracy"] == 1.0
    assert result["num_samples"] == 1


def test_nongt_helpers_drop_the_gt_column_in_class_order() -> None:
    z = torch.tensor([[0.0, 3.0, 1.0, 2.0]], dtype=torch.float64)  # float64: rel=1e-6 is ~8 float32 ulps
    y = torch.tensor([1])
    assert nongt_logits(z, y).tolist() == [[0.0, 1.0, 2.0]]
    s = 1 + E**3 + E + E**2
    assert nongt_probabilities(z, y).squeeze(0).tolist() == pytest.approx([1 / s, E / s, E**2 / s])


def test_uniform_nongt_probabilities_have_zero_derived_std_and_full_entropy() -> None:
    z = torch.tensor([[5.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0])
    assert derived_std_per_sample(z, y).item() == pytest.approx(0.0, abs=1e-15)
    assert nongt_entropy_per_sample(z, y).item() == pytest.approx(1.0)
    assert derived_average_per_sample(z, y).item() == pytest.approx(1 / (E**5 + 3))
    assert inherent_variance_per_sample(z, y).item() == 0.0


def test_ece_and_accuracy_on_a_hand_built_case() -> None:
    # softmax(log p) = p, so each row's confidence is its largest p.
    probs = torch.tensor(
        [
            [0.7, 0.1, 0.1, 0.1],  # y=0, correct, conf 0.70 -> bin (0.5, 1]
            [0.9, 0.05, 0.03, 0.02],  # y=1, wrong, conf 0.90 -> bin (0.5, 1]
            [0.4, 0.3, 0.2, 0.1],  # y=0, correct, conf 0.40 -> bin (0, 0.5]
            [0.3, 0.45, 0.15, 0.1],  # y=0, wrong, conf 0.45 -> bin (0, 0.5]
        ],
        dtype=torch.float64,
    )
    y = torch.tensor([0, 1, 0, 0])
    # bin (0, .5]: acc 1/2, conf (0.4 + 0.45)/2 = 0.425; bin (.5, 1]: acc 1/2, conf 0.8
    want = 2 / 4 * abs(0.5 - 0.425) + 2 / 4 * abs(0.5 - 0.8)
    assert want == pytest.approx(0.1875)
    result = dark_knowledge_metrics(probs.log(), y, temperatures=(1, 4), num_bins=2)
    assert result["ece"] == pytest.approx(want, rel=1e-12)
    assert result["accuracy"] == 0.5
    assert result["per_class"]["accuracy"] == [pytest.approx(2 / 3), 0.0, None, None]
    assert result["per_class"]["num_samples"] == [3, 1, 0, 0]


def test_perfectly_calibrated_bins_give_zero_ece() -> None:
    # two samples at confidence 0.5 (bin 0 of 2, as bins are (b/M, (b+1)/M]); one right, one wrong
    z = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 1])  # argmax picks class 0 for both rows
    result = dark_knowledge_metrics(z, y, num_bins=2)
    assert result["accuracy"] == 0.5
    assert result["ece"] == pytest.approx(0.0, abs=1e-15)


def test_per_class_statistics_by_hand() -> None:
    z = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    result = DarkKnowledgeAccumulator(3, temperatures=(1,))
    result.update(z, y)
    out = result.compute()
    first = three_class_by_hand(1.0)
    s = E**3 + 2
    second = {"derived_average": 1 / s, "derived_std": 0.0, "nongt_entropy": 1.0, "target_prob": E**3 / s}
    per_class = out["per_class"]["per_temperature"]["1.0"]
    for name in first:
        assert per_class[name][0] == pytest.approx(first[name], rel=1e-12)
        assert per_class[name][1] == pytest.approx(second[name], rel=1e-12, abs=1e-15)
        assert per_class[name][2] is None
        assert out["per_temperature"]["1.0"][name] == pytest.approx((first[name] + second[name]) / 2, rel=1e-12)
    assert out["per_class"]["inherent_variance"] == [pytest.approx(0.25), 0.0, None]
    assert out["inherent_variance"] == pytest.approx(0.125)
    assert out["per_class"]["accuracy"] == [1.0, 1.0, None]
    json.dumps(out, allow_nan=False)  # strict JSON: no NaN anywhere


def test_streaming_over_batches_equals_one_big_batch() -> None:
    g = torch.Generator().manual_seed(0)
    z = 3 * torch.randn(103, 7, generator=g)
    y = torch.randint(0, 7, (103,), generator=g)
    whole = dark_knowledge_metrics(z, y, temperatures=(1, 3))
    sizes = [1, 10, 0, 40, 52]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    batches = [(z[s : s + n], y[s : s + n]) for s, n in zip(starts, sizes)]
    streamed = dark_knowledge_metrics(iter(batches), temperatures=(1, 3))
    assert streamed["num_samples"] == whole["num_samples"] == 103
    for key in ("accuracy", "ece", "inherent_variance"):
        assert streamed[key] == pytest.approx(whole[key], rel=1e-12)
    for tau in ("1.0", "3.0"):
        for name, value in whole["per_temperature"][tau].items():
            assert streamed["per_temperature"][tau][name] == pytest.approx(value, rel=1e-12)
            assert streamed["per_class"]["per_temperature"][tau][name] == pytest.approx(
                whole["per_class"]["per_temperature"][tau][name], rel=1e-12
            )


def test_logits_of_magnitude_1e4_stay_finite() -> None:
    z = torch.tensor([[1e4, -1e4, 0.0, 5e3], [-1e4, 1e4, 0.0, 0.0]], dtype=torch.float32)
    y = torch.tensor([0, 0])
    per_sample = (derived_average_per_sample, derived_std_per_sample, nongt_entropy_per_sample)
    for fn in (*per_sample, target_probability_per_sample):
        assert torch.isfinite(fn(z, y, 1.0)).all()
    assert target_probability_per_sample(z, y).tolist() == [1.0, 0.0]
    # row 0: non-GT logits [-1e4, 0, 5e3] put all non-GT mass on the last class -> entropy 0
    assert nongt_entropy_per_sample(z, y)[0].item() == pytest.approx(0.0, abs=1e-6)
    values = [-1e4, 0.0, 5e3]
    mean = sum(values) / 3
    want = sum((v - mean) ** 2 for v in values) / 3
    assert inherent_variance_per_sample(z.double(), y)[0].item() == pytest.approx(want, rel=1e-12)
    result = dark_knowledge_metrics(z, y)
    json.dumps(result, allow_nan=False)
    assert result["accuracy"] == 0.5


def test_two_classes_have_zero_spread_by_definition() -> None:
    z = torch.tensor([[1.0, -1.0]])
    y = torch.tensor([0])
    assert derived_std_per_sample(z, y).item() == 0.0
    assert nongt_entropy_per_sample(z, y).item() == 0.0


@pytest.mark.parametrize(
    ("logits", "targets", "needle"),
    [
        (torch.zeros(3), torch.zeros(3, dtype=torch.long), "logits must have shape"),
        (torch.zeros(3, 4), torch.zeros(2, dtype=torch.long), "targets must have shape"),
        (torch.zeros(3, 4), torch.tensor([0, 1, 4]), "targets must lie in [0, 3]"),
        (torch.zeros(3, 4), torch.tensor([0.0, 1.0, 2.0]), "targets must be an integer tensor"),
        (torch.zeros(3, 4, dtype=torch.long), torch.tensor([0, 1, 2]), "logits must be a floating-point"),
        (torch.zeros(3, 1), torch.tensor([0, 0, 0]), "at least 2 classes"),
    ],
)
def test_bad_input_names_the_argument(logits: torch.Tensor, targets: torch.Tensor, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        derived_std_per_sample(logits, targets)


def test_accumulator_rejects_bad_configuration_and_input() -> None:
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2, got 1"):
        DarkKnowledgeAccumulator(1)
    with pytest.raises(ValueError, match="temperatures must be a positive finite number, got 0"):
        DarkKnowledgeAccumulator(3, temperatures=(1, 0))
    with pytest.raises(ValueError, match="temperatures must not repeat"):
        DarkKnowledgeAccumulator(3, temperatures=(1, 1.0))
    with pytest.raises(ValueError, match="num_bins must be an integer >= 1"):
        DarkKnowledgeAccumulator(3, num_bins=0)
    acc = DarkKnowledgeAccumulator(3)
    with pytest.raises(ValueError, match="num_samples is 0"):
        acc.compute()
    with pytest.raises(ValueError, match="num_classes=3 columns, got 4"):
        acc.update(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="logits must be finite"):
        acc.update(torch.tensor([[0.0, float("nan"), 1.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="temperature must be a positive finite number"):
        derived_std_per_sample(torch.zeros(1, 3), torch.tensor([0]), temperature=-1.0)
    with pytest.raises(ValueError, match="targets must be given"):
        dark_knowledge_metrics(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="at least one"):
        dark_knowledge_metrics([])


def test_per_sample_functions_are_differentiable() -> None:
    # losses reuse them, so gradients must flow
    z = torch.tensor([[2.0, 1.0, 0.0]], requires_grad=True)
    derived_std_per_sample(z, torch.tensor([0]), 2.0).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
