"""The KDModel contract, checked for every registered model name."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F

from kdlab.models import MODELS, KDModel, create_model, list_taps

IN_SHAPE = (1, 8, 8)
NUM_CLASSES = 5
BATCH = 3

# small capacities keep the contract fast; fixed-capacity names (wrn_16_1...) are built as registered
SMALL: dict[str, dict] = {
    "mlp": {"width": 16, "depth": 2},
    "cnn": {"width": 0.25, "depth": 2},
    "resnet": {"depth": 8, "width": 0.25},
    "wrn": {"depth": 10, "widen_factor": 1},
    **{f"resnet{d}": {"width": 0.25} for d in (8, 14, 20, 32, 44, 56, 110)},
}
ALL_NAMES = MODELS.names()


def build(name: str, in_shape=IN_SHAPE, seed: int = 0) -> KDModel:
    torch.manual_seed(seed)
    return create_model(name, NUM_CLASSES, in_shape, **SMALL.get(name, {}))


def test_every_family_is_registered():
    expected = {"mlp", "cnn", "resnet", "wrn", "resnet8", "resnet14", "resnet20", "resnet32", "resnet44",
                "resnet56", "resnet110", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"}
    assert expected <= set(ALL_NAMES)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_forward_shapes_and_split(name):
    model = build(name).eval()
    x = torch.randn(BATCH, *IN_SHAPE)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        split = model.forward_head(features)
    assert isinstance(model, KDModel)
    assert logits.shape == (BATCH, NUM_CLASSES)
    assert features.shape == (BATCH, model.num_features)
    assert model.num_features >= 1
    torch.testing.assert_close(split, logits)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_backward_gives_finite_grads_on_every_param(name):
    model = build(name).train()
    loss = F.cross_entropy(model(torch.randn(BATCH, *IN_SHAPE)), torch.tensor([0, 1, 2]))
    loss.backward()
    for path, param in model.named_parameters():
        assert param.grad is not None, f"{path} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{path} has a non-finite gradient"
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0


@pytest.mark.parametrize("name", ALL_NAMES)
def test_spec_rebuilds_the_same_architecture(name):
    model = build(name)
    spec = json.loads(json.dumps(model.spec))  # the spec must survive a checkpoint's JSON metadata
    assert spec["name"] == name
    assert spec["num_classes"] == NUM_CLASSES
    assert spec["in_shape"] == list(IN_SHAPE)
    torch.manual_seed(0)
    rebuilt = create_model(**spec)
    assert rebuilt.spec == model.spec
    original = model.state_dict()
    again = rebuilt.state_dict()
    assert list(again) == list(original)
    for key, value in original.items():
        assert again[key].shape == value.shape, key
        torch.testing.assert_close(again[key], value, msg=f"{key} differs under the same seed")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_taps_resolve_and_hooks_fire_shallow_to_deep(name):
    model = build(name).eval()
    taps = model.feature_taps
    assert list_taps(model) == list(taps)
    assert list(taps)[-1] == "pre_logits"
    fired: list[str] = []
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for tap, path in taps.items():
        module = model.get_submodule(path)

        def hook(_module, _inputs, output, tap=tap):
            fired.append(tap)
            outputs[tap] = output

        handles.append(module.register_forward_hook(hook))
    x = torch.randn(BATCH, *IN_SHAPE)
    with torch.no_grad():
        features = model.forward_features(x)
    for handle in handles:
        handle.remove()
    assert fired == list(taps)
    for tap, output in outputs.items():
        assert output.shape[0] == BATCH, tap
    torch.testing.assert_close(outputs["pre_logits"], features)


@pytest.mark.parametrize("in_shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet", "wrn"])
def test_every_family_reads_every_image_shape(name, in_shape):
    model = build(name, in_shape).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, *in_shape))
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()


def test_mlp_reads_vectors():
    model = create_model("mlp", 3, (20,), width=8)
    assert model(torch.randn(4, 20)).shape == (4, 3)
    assert model.num_features == 8


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet", "wrn"])
def test_same_seed_same_weights_other_seed_other_weights(name):
    a, b, c = build(name, seed=7), build(name, seed=7), build(name, seed=8)
    for key, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[key], value)
    assert any(not torch.equal(c.state_dict()[k], v) for k, v in a.state_dict().items())


@pytest.mark.parametrize(
    "name, bad_input",
    [("mlp", torch.randn(2, 1, 8, 7)), ("cnn", torch.randn(2, 3, 8, 8)), ("resnet", torch.randn(2, 8, 8)),
     ("wrn", torch.randn(2, 2, 8, 8))],
)
def test_wrong_input_shape_names_x_and_the_expected_shape(name, bad_input):
    model = build(name)
    with pytest.raises(ValueError, match=r"input x of shape \[2, .*in_shape=\[1, 8, 8\]"):
        model(bad_input)
