"""The distillability audit end to end on a tiny digits preset, its margins recomputed by hand, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kdlab.config import parse_config
from kdlab.errors import ConfigError
from kdlab.protect import audit_distillability, resolve_model
from kdlab.protect.audit import margin_verdict
from kdlab.recipe import run

TINY = ["seeds=[0,1]", "temperatures=[1,4]", "skeptical.hidden=16",
        "probes=[{label: mlp, model: {name: mlp, width: 32, depth: 2}, tap: hidden1, epochs: 3, batch_size: 64, "
        "train_subset: 300}, {label: cnn, model: {name: cnn, width: 0.25, depth: 2}, epochs: 1, batch_size: 64, "
        "train_subset: 300}]"]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    cfg = parse_config({"data": {"name": "digits", "val_size": 200, "seed": 0},
                        "model": {"name": "mlp", "width": 64, "depth": 1}, "optim": {"lr": 0.1},
                        "train": {"epochs": 3, "batch_size": 64, "seed": 3, "progress": False}})
    path = tmp_path_factory.mktemp("audit") / "teacher"
    run(cfg, path)
    return path


def test_audit_end_to_end_on_digits(tmp_path, teacher_dir):
    out = tmp_path / "audit"
    results = audit_distillability(teacher_dir, out, preset="quick",
                                   overrides=TINY + [f"reference={teacher_dir}"], progress=False)
    saved = json.loads((out / "results.json").read_text())
    assert saved["study"] == "audit" and saved["dataset"] == "digits"
    teacher_summary = json.loads((teacher_dir / "summary.json").read_text())
    # same data section as the teacher's run -> the same test split: the same accuracy
    assert saved["model"]["test_accuracy"] == pytest.approx(teacher_summary["test_accuracy"])
    assert saved["model"]["params"] == teacher_summary["params"]
    # 2 probes x 2 seeds x (CE + KD at 2 temperatures + skeptical)
    assert len(saved["students"]) == 2 * 2 * 4
    assert {s["method"] for s in saved["students"]} == {"ce", "kd_T1", "kd_T4", "skeptical_T4"}
    for label, probe in saved["probes"].items():
        accs = {m: {s["seed"]: s["test_accuracy"] for s in saved["students"]
                    if s["probe"] == label and s["method"] == m} for m in ("ce", "kd_T1", "kd_T4", "skeptical_T4")}
        means = {m: np.mean(list(v.values())) for m, v in accs.items()}
        best_kd = max(("kd_T1", "kd_T4"), key=means.get)
        assert probe["best_kd"] == best_kd
        margin = np.mean([accs[best_kd][s] - accs["ce"][s] for s in (0, 1)])
        assert probe["protection_margin"]["mean"] == pytest.approx(margin)
        assert probe["protection_verdict"] == margin_verdict(probe["protection_margin"])
        best = max(means, key=lambda m: -1 if m == "ce" else means[m])
        assert probe["best_attack"] == best
    worst = max(saved["probes"], key=lambda p: saved["probes"][p]["protection_margin"]["mean"])
    assert saved["protection_margin"]["probe"] == worst
    # the reference is the model itself: identical affinities and zero divergence
    assert saved["affinity_consistency"]["spearman"] == pytest.approx(1.0)
    assert all(abs(v) < 1e-6 for v in saved["kl_to_reference"].values())
    assert set(saved["model"]["test"]["derived_std"]) == {"1.0", "2.0", "4.0", "8.0"}
    assert len(saved["claims"]) == 2
    assert all(c["holds"] in (True, False, None) and any(ch.isdigit() for ch in c["evidence"])
               for c in saved["claims"])
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "Protection by probe" in (out / "report.md").read_text()
    assert results["runs_trained"] == 16 and results["runs_reused"] == 0


def test_margin_verdicts():
    assert margin_verdict({"mean": 0.02, "low": 0.01, "high": 0.03, "n": 3}) == "leaks"
    assert margin_verdict({"mean": -0.001, "low": -0.01, "high": 0.008, "n": 3}) == "protected"
    assert margin_verdict({"mean": 0.004, "low": -0.01, "high": 0.018, "n": 3}) == "inconclusive"
    assert margin_verdict({"mean": -0.05, "low": float("nan"), "high": float("nan"), "n": 1}) == "inconclusive"


def test_audit_errors_name_the_input_before_training(tmp_path, teacher_dir):
    with pytest.raises(ConfigError, match="model='.*missing' does not exist"):
        audit_distillability(tmp_path / "missing", tmp_path / "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="without trained weights"):
        audit_distillability(tmp_path / "empty", tmp_path / "a")
    with pytest.raises(ConfigError, match="reference='.*nope' does not exist"):
        audit_distillability(teacher_dir, tmp_path / "a", overrides=[f"reference={tmp_path / 'nope'}"])
    with pytest.raises(ConfigError, match="unknown key 'temperature'"):
        audit_distillability(teacher_dir, tmp_path / "a", overrides=["temperature=[1]"])
    with pytest.raises(ConfigError, match="unknown feature tap 'layer9'"):
        audit_distillability(teacher_dir, tmp_path / "a", preset="quick",
                             overrides=["probes=[{label: m, model: {name: mlp}, tap: layer9}]"])
    with pytest.raises(ConfigError, match="data: .*val_size"):
        audit_distillability(teacher_dir, tmp_path / "a", overrides=["data.val_size=-3"])
    assert not (tmp_path / "a").exists()


def test_resolve_model_reads_weights_files_and_their_run(teacher_dir):
    source = resolve_model(teacher_dir / "checkpoints" / "best.safetensors")
    assert source.run_dir == teacher_dir and source.run_config.data.name == "digits"
    assert source.spec["name"] == "mlp" and source.dataset == "digits"
    assert source.teacher_config().run == str(teacher_dir)
    assert resolve_model(teacher_dir).weights == teacher_dir / "checkpoints" / "best.safetensors"
