"""FeatureTaps / resolve_tap: capture the right tensors on plain and kdlab models, and leave no hook behind."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from kdlab.distill.hooks import FeatureTaps, first_tensor, resolve_tap
from kdlab.errors import ConfigError
from kdlab.losses import build_feature_loss
from kdlab.models import create_model


def no_hooks_left(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_hooks_with_kwargs for m in model.modules())


def small_sequential() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_sequential_taps_capture_the_module_outputs_with_gradients():
    model = small_sequential()
    with torch.no_grad():
        # hand-set first layer: h = W x + b with W = [[1,0,0],[0,1,0],[0,0,1],[1,1,1]], b = [0, 0, 0, -1]
        model[0].weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]))
        model[0].bias.copy_(torch.tensor([0.0, 0, 0, -1]))
    x = torch.tensor([[1.0, -2.0, 3.0]])
    with FeatureTaps(model, ["0", "1"]) as taps:
        out = model(x)
        linear, relu = taps.features["0"], taps["1"]
    assert linear.tolist() == [[1.0, -2.0, 3.0, 1.0]]        # 1 - 2 + 3 - 1 = 1
    assert relu.tolist() == [[1.0, 0.0, 3.0, 1.0]]
    assert torch.equal(out, model[2](relu))
    # captured, not detached: a loss on the tap trains the layers before it
    assert linear.requires_grad
    linear.sum().backward()
    assert model[0].weight.grad is not None
    assert no_hooks_left(model)


def test_kdlab_cnn_taps_match_a_manual_forward():
    model = create_model("cnn", 10, (1, 28, 28)).eval()
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with FeatureTaps(model, ["stage1", "stage2", "pre_logits", "stages.0.0"]) as taps:
        logits = model(x)
    stage1 = model.stages[0](x)
    stage2 = model.stages[1](stage1)
    pooled = model.pool(stage2)
    assert torch.equal(taps.features["stage1"], stage1) and stage1.shape == (2, 32, 14, 14)
    assert torch.equal(taps.features["stage2"], stage2) and stage2.shape == (2, 64, 7, 7)
    assert torch.equal(taps.features["pre_logits"], pooled) and pooled.shape == (2, 64)
    assert torch.equal(taps.features["stages.0.0"], model.stages[0][0](x))     # a raw path on a kdlab model
    assert torch.equal(logits, model.head(pooled))
    assert taps.paths == {"stage1": "stages.0", "stage2": "stages.1", "pre_logits": "pool",
                          "stages.0.0": "stages.0.0"}
    assert no_hooks_left(model)


def test_hooks_are_removed_when_the_with_block_raises():
    model = small_sequential()
    with pytest.raises(RuntimeError, match="boom"):
        with FeatureTaps(model, ["0", "2"]) as taps:
            model(torch.zeros(1, 3))
            assert not no_hooks_left(model)
            raise RuntimeError("boom")
    assert no_hooks_left(model)
    assert not taps.active


def test_remove_is_idempotent_and_stops_capturing():
    model = small_sequential()
    taps = FeatureTaps(model, ["2"])
    model(torch.zeros(1, 3))
    first = taps.features["2"]
    taps.remove()
    taps.remove()
    assert no_hooks_left(model)
    model(torch.ones(1, 3))
    assert taps.features["2"] is first
    taps.clear()
    assert taps.features == {}


def test_removing_one_set_of_taps_keeps_other_hooks():
    model = small_sequential()
    seen = []
    own = model[0].register_forward_hook(lambda *_: seen.append(1))
    with FeatureTaps(model, ["0"]):
        model(torch.zeros(1, 3))
    model(torch.zeros(1, 3))
    assert len(seen) == 2 and len(model[0]._forward_hooks) == 1
    own.remove()


def test_teacher_taps_under_inference_mode_feed_a_loss_that_backpropagates_to_the_student():
    teacher = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()).eval()
    student = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
    x = torch.randn(2, 1, 5, 5)
    with FeatureTaps(teacher, ["0"]) as t_taps, FeatureTaps(student, ["1"]) as s_taps:
        with torch.inference_mode():
            teacher(x)
        student(x)
        assert t_taps.features["0"].is_inference()
        for name in ("fitnet", "at", "agd", "nonlocal", "rkd", "sp"):
            loss = build_feature_loss(name)(s_taps.features["1"], t_taps.features["0"])
            loss.backward(retain_graph=True)
            assert torch.isfinite(student[0].weight.grad).all()
    assert no_hooks_left(teacher) and no_hooks_left(student)


def test_tuple_and_dict_outputs_keep_the_first_tensor():
    class Pair(nn.Module):
        def forward(self, x):
            return (None, [x * 2, x * 3]), {"other": x}

    model = nn.Sequential(OrderedDict(pair=Pair()))
    with FeatureTaps(model, ["pair"]) as taps:
        model(torch.ones(1, 2))
    assert taps.features["pair"].tolist() == [[2.0, 2.0]]
    assert first_tensor({"a": 1, "b": torch.zeros(1)}).shape == (1,)
    assert first_tensor(("no", "tensor")) is None


def test_unknown_taps_raise_config_error_with_did_you_mean_and_add_no_hook():
    model = create_model("cnn", 10, (1, 28, 28))
    with pytest.raises(ConfigError, match=r"unknown feature tap 'stag2'.*Did you mean 'stage2'\?.*stage1, stage2"):
        FeatureTaps(model, ["stage1", "stag2"])
    assert no_hooks_left(model)
    plain = nn.Sequential(OrderedDict(features=nn.Sequential(nn.Linear(2, 2)), classifier=nn.Linear(2, 1)))
    with pytest.raises(ConfigError, match=r"'feature\.0'.*Did you mean 'features\.0'\?.*module paths: features, "):
        resolve_tap(plain, "feature.0")
    assert resolve_tap(plain, "features.0") == "features.0"
    assert resolve_tap(model, "pre_logits") == "pool"
    with pytest.raises(ConfigError, match="non-empty string"):
        resolve_tap(plain, "")
    with pytest.raises(ConfigError, match="each tap at most once"):
        FeatureTaps(plain, ["classifier", "classifier"])
    with pytest.raises(ConfigError, match="list of tap names"):
        FeatureTaps(plain, "classifier")


def test_a_tap_that_did_not_run_says_so():
    model = small_sequential()
    with FeatureTaps(model, ["0"]) as taps:
        with pytest.raises(KeyError, match="has no output yet"):
            taps["0"]
        with pytest.raises(KeyError, match="not one of these taps"):
            taps["1"]
