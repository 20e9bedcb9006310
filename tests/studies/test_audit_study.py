"""The distillability audit end to end on a tiny digits preset, its margins recomputed by hand, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kdlab.config import parse_config
from kdlab.errors import ConfigError
from kdlab.cli import main
from kdlab.protect import resolve_model
from kdlab.recipe import run
from kdlab.studies.audit import AuditConfig, audit_distillability, claims

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
        students = [s for s in saved["students"] if s["probe"] == label]
        accs = {m: {s["seed"]: s["test_accuracy"] for s in students if s["method"] == m}
                for m in ("ce", "kd_T1", "kd_T4", "skeptical_T4")}
        vals = {m: np.mean([s["val_accuracy"] for s in students if s["method"] == m])
                for m in ("kd_T1", "kd_T4", "skeptical_T4")}
        # the copier's choices read validation accuracy only
        best_kd = max(("kd_T1", "kd_T4"), key=vals.get)
        assert probe["best_kd"] == best_kd and probe["best_attack"] == max(vals, key=vals.get)
        margin = np.mean([accs[best_kd][s] - accs["ce"][s] for s in (0, 1)])
        assert probe["protection_margin"]["mean"] == pytest.approx(margin)
    # the reference is the model itself: identical affinities and zero divergence
    assert saved["affinity_consistency"]["spearman"] == pytest.approx(1.0)
    assert all(abs(v) < 1e-6 for v in saved["kl_to_reference"].values())
    assert set(saved["model"]["test"]["derived_std"]) == {"1.0", "2.0", "4.0", "8.0"}
    assert [c["id"] for c in saved["claims"]] == ["resists_kd_mlp", "resists_attack_mlp", "resists_kd_cnn",
                                                  "resists_attack_cnn"]
    assert all(c["n"] == 2 and c["selected_on"].startswith("validation") for c in saved["claims"])
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "Protection by probe" in (out / "report.md").read_text()
    assert results["runs_trained"] == 16 and results["runs_reused"] == 0
    before = (out / "report.md").read_bytes()
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.md").read_bytes() == before


def _probe(margin, val):
    """A probe whose two KD temperatures score ``val`` on validation and whose chosen margins are ``margin``."""
    methods = {m: {"val_accuracy": {"mean": v}, "test_accuracy": {"mean": 0.8}} for m, v in val.items()}
    best = max(val, key=val.get)
    return {"methods": methods, "best_kd": best, "best_attack": best, "protection_margin": margin,
            "attack_margin": margin}


def test_audit_claims_on_hand_made_margins():
    cfg = AuditConfig.model_validate({"model": "m", "probes": [{"label": "mlp", "model": {"name": "mlp"}}]})
    resists_kd, resists_attack = claims(cfg)
    leaks = {"mean": 0.02, "low": 0.01, "high": 0.03, "n": 3}
    protected = {"mean": -0.02, "low": -0.03, "high": -0.005, "n": 3}
    unclear = {"mean": 0.004, "low": -0.01, "high": 0.018, "n": 3}
    one_seed = {"mean": -0.05, "low": float("nan"), "high": float("nan"), "n": 1}
    val = {"kd_T1": 0.81, "kd_T4": 0.84}
    for margin, expected in ((leaks, False), (protected, True), (unclear, None), (one_seed, None)):
        entry = resists_kd.evaluate({"probes": {"mlp": _probe(margin, val)}})
        assert entry["holds"] is expected and entry["not_applicable"] is None
        assert entry["selections"] == {"mlp method": "kd_T4"}
    na = resists_attack.evaluate({"probes": {"mlp": _probe({**leaks, "n": 0}, val)}})
    assert na["holds"] is None and na["not_applicable"] == "probe mlp has no seed with both students"


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


def test_every_audit_claim_true_false_and_undecided(verdict_intervals):
    cfg = AuditConfig.model_validate({"model": "m", "probes": [{"label": "mlp", "model": {"name": "mlp"}},
                                                               {"label": "cnn", "model": {"name": "cnn"}}]})
    for claim in claims(cfg):
        for expected, (mean, low, high) in verdict_intervals(claim.rule).items():
            probe = _probe({"mean": mean, "low": low, "high": high, "n": 3}, {"kd_T1": 0.8, "kd_T4": 0.7})
            assert claim.evaluate({"probes": {"mlp": probe, "cnn": probe}})["holds"] is expected, (claim.id, expected)
