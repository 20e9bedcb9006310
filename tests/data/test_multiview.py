"""The multi-view generator against the specification of the survey's section 9 (Allen-Zhu & Li, ICLR 2023)."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.data.multiview import VIEWS, MultiViewData
from kdlab.errors import ConfigError


def test_view_proportions_and_classes_match_the_specification_within_sampling_error():
    data = MultiViewData(num_classes=2, num_patches=4, patch_dim=8, seed=0)
    n = 20_000
    s = data.sample(n, torch.Generator().manual_seed(1))
    assert s.x.shape == (n, 4, 8) and s.x.dtype == torch.float32
    for view, p in zip(range(3), (0.8, 0.1, 0.1)):
        observed = float((s.view == view).float().mean())
        assert abs(observed - p) < 4 * math.sqrt(p * (1 - p) / n)  # 4 binomial standard errors
    assert abs(float(s.y.float().mean()) - 0.5) < 4 * math.sqrt(0.25 / n)


def test_feature_coefficients_are_exactly_as_specified():
    data = MultiViewData(num_classes=2, num_patches=4, patch_dim=8, noise_std=0.0, seed=0)
    s = data.sample(500, torch.Generator().manual_seed(2))
    # with no noise, projecting every patch on feature (c, l) and summing recovers its coefficient
    proj = torch.einsum("npd,cld->ncl", s.x, data.features)
    torch.testing.assert_close(proj, s.coefficients, atol=1e-5, rtol=0)
    for i in range(500):
        y, view, other = int(s.y[i]), int(s.view[i]), 1 - int(s.y[i])
        expected_own = {0: [1.0, 1.0], 1: [1.0, 0.0], 2: [0.0, 1.0]}[view]  # both / first only / second only
        assert s.coefficients[i, y].tolist() == expected_own
        assert s.coefficients[i, other].tolist() == pytest.approx([0.1, 0.1])


def test_features_are_orthonormal_and_fill_disjoint_patches():
    data = MultiViewData(num_classes=3, num_patches=12, patch_dim=16, patches_per_feature=2, noise_std=0.0, seed=4)
    f = data.features.reshape(6, 16)
    torch.testing.assert_close(f @ f.T, torch.eye(6), atol=1e-5, rtol=0)
    s = data.sample(50, torch.Generator().manual_seed(0))
    nonzero_patches = (s.x.abs().sum(2) > 0).sum(1)
    nonzero_features = (s.coefficients > 0).sum((1, 2))
    assert torch.equal(nonzero_patches, 2 * nonzero_features)  # every feature in its own 2 patches
    # each patch holds one feature: its norm is that feature's coefficient
    norms = s.x.norm(dim=2)
    assert set(round(v, 4) for v in norms.flatten().tolist()) <= {0.0, 0.1, 1.0}


def test_noise_is_gaussian_with_the_given_std():
    data = MultiViewData(num_classes=2, num_patches=8, patch_dim=64, noise_std=0.25, seed=0)
    s = data.sample(400, torch.Generator().manual_seed(3))
    clean = torch.einsum("ncl,cld->nd", s.coefficients, data.features)
    # the feature part sits in 4 of 8 patches; subtracting it leaves the noise
    noise_var = (s.x.pow(2).sum((1, 2)) - clean.pow(2).sum(1)).mean() / (8 * 64)
    assert float(noise_var) == pytest.approx(0.0625, rel=0.05)


def test_probe_inputs_carry_one_view_of_every_class():
    data = MultiViewData(num_classes=2, num_patches=4, patch_dim=8, noise_std=0.0, seed=0)
    for view in VIEWS:
        p = data.probe(10, view)
        assert p.y.tolist() == [0] * 10 + [1] * 10
        assert (p.view == VIEWS.index(view)).all()
    first = data.probe(5, "first")
    assert first.coefficients[:5, 0].tolist() == [[1.0, 0.0]] * 5
    assert first.coefficients[5:, 1].tolist() == [[1.0, 0.0]] * 5


def test_same_seed_same_data_and_bad_arguments_name_the_key():
    a = MultiViewData(seed=3).sample(10, torch.Generator().manual_seed(0))
    b = MultiViewData(seed=3).sample(10, torch.Generator().manual_seed(0))
    assert torch.equal(a.x, b.x)
    with pytest.raises(ConfigError, match="num_patches=3"):
        MultiViewData(num_classes=2, num_patches=3)
    with pytest.raises(ConfigError, match="view_probabilities"):
        MultiViewData(view_probabilities=(0.5, 0.1, 0.1))
    with pytest.raises(ConfigError, match="view='third'"):
        MultiViewData().probe(3, "third")
