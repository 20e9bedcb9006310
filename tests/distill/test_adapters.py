"""make_adapter and infer_feature_shapes: shapes, hand-checked values, trainability, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlab.distill.adapters import ConvAdapter, PooledLinearAdapter, infer_feature_shapes, make_adapter
from kdlab.errors import ConfigError
from kdlab.losses import build_feature_loss
from kdlab.models import create_model


def bilinear_2_to_4(m):
    """Bilinear 2x2 -> 4x4 upsampling with pixel-area alignment (align_corners=False), by hand.

    Output pixel centre o maps to input coordinate (o + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to [0, 1]:
    weights on (in0, in1) are (1, 0), (0.75, 0.25), (0.25, 0.75), (0, 1).
    """
    w = [(1.0, 0.0), (0.75, 0.25), (0.25, 0.75), (0.0, 1.0)]
    return [[sum(w[r][a] * w[c][b] * m[a][b] for a in range(2) for b in range(2)) for c in range(4)]
            for r in range(4)]


def test_equal_shapes_give_identity():
    adapter = make_adapter([8, 4, 4], (8, 4, 4))
    assert isinstance(adapter, nn.Identity) and not list(adapter.parameters())


def test_conv_adapter_8ch_4x4_to_16ch_8x8_shape_and_training():
    adapter = make_adapter([8, 4, 4], [16, 8, 8])
    assert isinstance(adapter, ConvAdapter) and adapter.conv.weight.shape == (16, 8, 1, 1)
    x = torch.randn(2, 8, 4, 4)
    y = adapter(x)
    assert y.shape == (2, 16, 8, 8)
    y.pow(2).mean().backward()
    assert all(p.grad is not None for p in adapter.parameters())
    with_bn = make_adapter([8, 4, 4], [16, 8, 8], batch_norm=True)
    assert isinstance(with_bn.norm, nn.BatchNorm2d) and with_bn.conv.bias is None
    assert with_bn(x).shape == (2, 16, 8, 8)


def test_conv_adapter_values_by_hand():
    # 2 channels, 2x2 -> 1 channel, 4x4: out = bilinear(1 * ch0 + 2 * ch1 + 0.5)
    adapter = make_adapter([2, 2, 2], [1, 4, 4])
    with torch.no_grad():
        adapter.conv.weight.copy_(torch.tensor([1.0, 2.0]).view(1, 2, 1, 1))
        adapter.conv.bias.fill_(0.5)
    ch0, ch1 = [[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]
    mixed = [[ch0[r][c] + 2 * ch1[r][c] + 0.5 for c in range(2)] for r in range(2)]    # [[1.5, 4.5], [5.5, 4.5]]
    expected = bilinear_2_to_4(mixed)
    assert expected[0] == [1.5, 2.25, 3.75, 4.5]
    assert expected[1] == [2.5, 3.0, 4.0, 4.5]          # 0.75 * row0 + 0.25 * row1: 0.75 * 1.5 + 0.25 * 5.5 = 2.5
    y = adapter(torch.tensor([[ch0, ch1]], dtype=torch.float32))
    assert y[0, 0].flatten().tolist() == pytest.approx([v for row in expected for v in row])


def test_vector_5_to_7_is_linear():
    adapter = make_adapter([5], [7])
    assert isinstance(adapter, nn.Linear) and (adapter.in_features, adapter.out_features) == (5, 7)
    assert adapter(torch.randn(3, 5)).shape == (3, 7)


def test_conv_to_vector_pools_then_maps_by_hand():
    adapter = make_adapter([2, 2, 2], [1])
    assert isinstance(adapter, PooledLinearAdapter)
    with torch.no_grad():
        adapter.linear.weight.copy_(torch.tensor([[1.0, -1.0]]))
        adapter.linear.bias.fill_(0.25)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 2.0]]]])
    # channel means 2.5 and 0.5 -> 2.5 - 0.5 + 0.25
    assert adapter(x).tolist() == [[2.25]]
    assert make_adapter([8, 4, 4], [7])(torch.randn(2, 8, 4, 4)).shape == (2, 7)


def test_vector_to_feature_map_is_refused_with_advice():
    with pytest.raises(ConfigError, match=r"student_shape=\[5\].*teacher_shape=\[16, 8, 8\].*relation loss"):
        make_adapter([5], [16, 8, 8])


@pytest.mark.parametrize("bad", [[8, 4, 2, 1], [0], "abc", [2.0, 3, 3], []])
def test_malformed_shapes_are_refused(bad):
    with pytest.raises(ConfigError, match=r"student_shape=.*\[D\].*\[C, H, W\]"):
        make_adapter(bad, [4])
    with pytest.raises(ConfigError, match="batch_norm"):
        make_adapter([4], [4], batch_norm="yes")


def test_mismatched_pairs_through_adapters_into_losses():
    # conv 8ch 4x4 student vs 16ch 8x8 teacher; vector 5 vs 7; conv student vs vector teacher
    pairs = [((8, 4, 4), (16, 8, 8), ["fitnet", "agd", "nonlocal"]), ((5,), (7,), ["fitnet"]),
             ((8, 4, 4), (7,), ["fitnet"])]
    for s_shape, t_shape, names in pairs:
        adapter = make_adapter(s_shape, t_shape)
        student = torch.randn(3, *s_shape, requires_grad=True)
        teacher = torch.randn(3, *t_shape)
        for name in names:
            loss_fn = build_feature_loss(name)
            assert loss_fn.needs_adapter(s_shape, t_shape)
            with pytest.raises(ValueError, match="make_adapter"):
                loss_fn(student, teacher)
            loss = loss_fn(adapter(student), teacher)
            adapter.zero_grad()
            loss.backward()
            assert torch.isfinite(loss)
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in adapter.parameters())


def test_infer_feature_shapes_on_a_kdlab_model_restores_modes_and_rng():
    model = create_model("cnn", 10, (1, 28, 28)).train()
    model.stages[1].eval()                          # a mixed state must come back exactly
    batch = torch.rand(2, 1, 28, 28)
    rng = torch.random.get_rng_state()
    shapes = infer_feature_shapes(model, ["stage1", "stage2", "pre_logits"], batch)
    assert shapes == {"stage1": (32, 14, 14), "stage2": (64, 7, 7), "pre_logits": (64,)}
    assert torch.equal(rng, torch.random.get_rng_state())
    assert model.training and model.stages[0].training and not model.stages[1].training
    assert all(not m._forward_hooks for m in model.modules())
    # BN running statistics untouched (eval mode during the dummy pass)
    assert model.stages[0][1].num_batches_tracked.item() == 0


def test_infer_feature_shapes_on_a_sequential_and_errors():
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Flatten(), nn.Linear(6 * 6 * 6, 4))
    assert infer_feature_shapes(model, ["0", "2"], torch.randn(2, 3, 8, 8)) == {"0": (6, 6, 6), "2": (4,)}
    with pytest.raises(ConfigError, match="unknown feature tap"):
        infer_feature_shapes(model, ["3"], torch.randn(2, 3, 8, 8))

    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ConfigError, match="produced no output"):
        infer_feature_shapes(Skips(), ["unused"], torch.randn(2, 2))
