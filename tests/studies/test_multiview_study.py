"""The multi-view study end to end on a tiny preset, its network by hand, and config errors."""

from __future__ import annotations

import json

import pytest
import torch

from kdlab.errors import ConfigError
from kdlab.studies import run_study
from kdlab.studies.multiview import MULTIVIEW, MultiViewStudyConfig, PatchSmoothReLUNet, claims, smoothed_relu


def run_multiview(**kwargs):
    return run_study(MULTIVIEW, **kwargs)

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
    assert [c["id"] for c in saved["claims"]] == ["single_one_view", "student_both_views", "student_beats_single",
                                                  "ensemble_beats_single"]
    assert saved["claims"][0]["n"] == 2 * 2 and saved["claims"][0]["interval_kind"].startswith("95% Clopper")
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


def test_multiview_claims_on_hand_made_numbers():
    cfg = MultiViewStudyConfig.model_validate({"train": {"model": {"name": "patch_smooth_relu"}}})
    one, both, student, ensemble = claims(cfg)

    def results(memorised, student_views, diff):
        return {"one_view_memorised": memorised, "views_learned": {"student": student_views},
                "differences": {"student - single": diff, "ensemble - single": diff}}

    up = {"mean": 0.05, "low": 0.02, "high": 0.08, "n": 5}
    down = {"mean": -0.05, "low": -0.08, "high": -0.02, "n": 5}
    r = results([True] * 10, [2] * 10, up)                 # 10/10: [0.69, 1] lies above 0.5
    assert [c.evaluate(r)["holds"] for c in (one, both, student, ensemble)] == [True, True, True, True]
    r = results([False] * 10, [1] * 9 + [2], down)         # 0/10: [0, 0.31]; 1/10: [0.003, 0.45]
    assert [c.evaluate(r)["holds"] for c in (one, both, student, ensemble)] == [False, False, False, False]
    r = results([True] * 6 + [False] * 4, [2] * 5 + [1] * 5, {"mean": 0.01, "low": -0.01, "high": 0.03, "n": 5})
    assert [c.evaluate(r)["holds"] for c in (one, both, student, ensemble)] == [None, None, None, None]
    assert one.evaluate(r)["evidence"].startswith("0.600 [0.262, 0.878] (95% Clopper-Pearson")
