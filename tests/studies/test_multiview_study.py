"""The multi-view study end to end on a tiny preset, its network by hand, and config errors."""

from __future__ import annotations

import json

import pytest
import torch

from kdlab.errors import ConfigError
from kdlab.studies.multiview import PatchSmoothReLUNet, run_multiview, smoothed_relu

TINY = ["data.patch_dim=32", "data.num_patches=6", "data.n_train=40", "data.n_test=40", "data.probe_per_class=10",
        "train.epochs=2", "members=2", "seeds=[0,1]"]


def test_smoothed_relu_by_hand():
    z = torch.tensor([-1.0, 0.25, 0.5, 1.0])
    # rho = 0.5, q = 3: z^3 / (3 * 0.25) below rho, z - (2/3) * 0.5 above
    expected = torch.tensor([0.0, 0.25**3 / 0.75, 0.5 / 3, 1.0 - 1.0 / 3])
    torch.testing.assert_close(smoothed_relu(z, rho=0.5, power=3), expected)
    # slope 1 on both sides of rho (continuous derivative)
    z = torch.tensor([0.5 - 1e-4, 0.5 + 1e-4], dtype=torch.float64, requires_grad=True)
    smoothed_relu(z, 0.5, 3).sum().backward()
    torch.testing.assert_close(z.grad, torch.ones(2, dtype=torch.float64), atol=1e-3, rtol=0)


def test_patch_network_sums_the_activation_over_neurons_and_patches():
    net = PatchSmoothReLUNet(num_classes=2, patch_dim=2, neurons=1, rho=1.0, power=2, init_std=1.0)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]]))
    x = torch.tensor([[[3.0, 0.25], [0.5, -1.0]]])  # one input, two patches
    # class 0: <w, x_p> = 3, 0.5 -> (3 - 0.5) + 0.5^2/2 = 2.625; class 1: 0.5, -2 -> 0.5^2/2 + 0 = 0.125
    torch.testing.assert_close(net(x), torch.tensor([[2.625, 0.125]]))
    with pytest.raises(ValueError, match="expected"):
        net(torch.zeros(1, 2, 3))


def test_multiview_study_end_to_end_and_rerun_reuses_everything(tmp_path):
    results = run_multiview(out=tmp_path, preset="quick", overrides=TINY, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["study"] == "multiview"
    assert [r["seed"] for r in saved["per_seed"]] == [0, 1]
    for r in saved["per_seed"]:
        for name in ("single", "ensemble", "student"):
            m = r[name]
            assert 0 <= m["test_accuracy"] <= 1
            assert set(m["probe_accuracy"]) == {"first", "second"}
            assert all(len(v) == 2 for v in m["probe_accuracy"].values())
        assert len(r["members"]) == 2
        assert r["members"][0]["test_accuracy"] == r["single"]["test_accuracy"]  # member 0 is the single model
    assert len(saved["students"]) == 2
    claims = saved["claims"]
    assert len(claims) == 3
    assert all(c["holds"] in (True, False, None) and any(ch.isdigit() for ch in c["evidence"]) for c in claims)
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") == 2
    again = run_multiview(out=tmp_path, preset="quick", overrides=TINY, progress=False)
    assert again["runs_trained"] == 0 and again["runs_reused"] == results["runs_trained"] == 2 * 3
    assert again["summary"] == results["summary"]


def test_multiview_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="members"):
        run_multiview(out=tmp_path, overrides=["members=1"], progress=False)
    with pytest.raises(ConfigError, match="rho"):
        run_multiview(out=tmp_path, overrides=["net.rho=0"], progress=False)
    assert not (tmp_path / "runs").exists()
