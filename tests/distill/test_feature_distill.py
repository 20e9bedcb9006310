"""Feature and relation distillation integrated in runs: terms, adapters, schedules, hint stage, hooks, resume."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from kdlab.config import FeatureTermConfig, TermSchedule, parse_config
from kdlab.distill import Distiller, build_feature_terms, scheduled_weight
from kdlab.errors import ConfigError
from kdlab.io import load_tensors
from kdlab.losses import build
from kdlab.models import create_model
from kdlab.recipe import run
from kdlab.train.checkpoint import load_latest_checkpoint

BASE = {
    "data": {"name": "digits", "val_size": 200, "seed": 0, "train_subset": 600},
    "model": {"name": "mlp", "width": 32, "depth": 1},
    "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "train": {"epochs": 3, "batch_size": 64, "seed": 3, "progress": False},
}


def no_hooks_left(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_hooks_with_kwargs for m in model.modules())


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """An MLP and a CNN teacher on digits, trained once for the module."""
    root = tmp_path_factory.mktemp("teachers")
    mlp = {**BASE, "model": {"name": "mlp", "width": 64, "depth": 2}, "train": {**BASE["train"], "epochs": 2}}
    cnn = {**BASE, "model": {"name": "cnn", "width": 0.25, "depth": 2}, "train": {**BASE["train"], "epochs": 2}}
    run(parse_config(mlp), root / "mlp")
    run(parse_config(cnn), root / "cnn")
    return {"mlp": str(root / "mlp"), "cnn": str(root / "cnn")}


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_mlp_to_mlp_terms_are_logged_weighted_and_kept_out_of_the_student_weights(tmp_path, teachers):
    raw = {**BASE, "teacher": {"run": teachers["mlp"]}, "loss": {"name": "kd", "temperature": 4, "alpha": 0.5},
           "features": [
               # student hidden1 [32] -> teacher hidden2 [64]: fitnet needs a linear adapter
               {"student_tap": "hidden1", "teacher_tap": "hidden2", "loss": {"name": "fitnet"}, "weight": 2.0},
               {"student_tap": "pre_logits", "teacher_tap": "pre_logits", "loss": {"name": "rkd"}},
               {"student_tap": "pre_logits", "teacher_tap": "hidden1", "loss": {"name": "sp"},
                "schedule": {"start_epoch": 2}},
           ]}
    summary = run(parse_config(raw), tmp_path / "s")
    assert summary["test_accuracy"] > 0.75
    assert [t["loss"]["name"] for t in summary["features"]] == ["fitnet", "rkd", "sp"]
    first, second, _ = _metrics(tmp_path / "s")
    assert {"train_fitnet_hidden1", "train_rkd_pre_logits", "train_rkd_pre_logits_distance",
            "train_rkd_pre_logits_angle"} <= set(first)
    assert "train_sp_pre_logits" not in first and "train_sp_pre_logits" in second   # scheduled from epoch 2
    # the logged total is the response loss plus the weighted terms (all per-sample averages, so exactly linear)
    for rec in (first, second):
        expected = (0.5 * rec["train_ce"] + 0.5 * rec["train_kd"] + 2.0 * rec["train_fitnet_hidden1"]
                    + rec["train_rkd_pre_logits"] + rec.get("train_sp_pre_logits", 0.0))
        assert rec["train_loss"] == pytest.approx(expected, rel=1e-4)
    # the adapter trains and is checkpointed, but the exported student is exactly the student
    exported = load_tensors(tmp_path / "s" / "checkpoints" / "best.safetensors")
    student = create_model("mlp", 10, (1, 8, 8), width=32, depth=1)
    assert set(exported) == set(student.state_dict())
    tensors, _ = load_latest_checkpoint(tmp_path / "s")
    assert tensors["terms.0.adapter.weight"].shape == (64, 32)
    assert not any(k.startswith("terms.1.adapter") for k in tensors)  # rkd compares any shapes: no adapter


def test_cnn_teacher_to_mlp_student_through_adapters_and_relations(tmp_path, teachers):
    # response (kd), feature (fitnet through an adapter) and relation knowledge across families in one run
    raw = {**BASE, "teacher": {"run": teachers["cnn"]}, "loss": {"name": "kd", "temperature": 2, "alpha": 0.5},
           "features": [
               # MLP vector [32] -> CNN pooled vector [16]: linear adapter
               {"student_tap": "hidden1", "teacher_tap": "pre_logits", "loss": {"name": "fitnet"}},
               # a relation between a vector and a feature map needs no adapter
               {"student_tap": "pre_logits", "teacher_tap": "stage2", "loss": {"name": "rkd_distance"}},
           ]}
    summary = run(parse_config(raw), tmp_path / "s")
    assert summary["test_accuracy"] > 0.75
    rec = _metrics(tmp_path / "s")[-1]
    assert rec["train_loss"] == pytest.approx(0.5 * rec["train_ce"] + 0.5 * rec["train_kd"] + rec["train_fitnet_hidden1"]
                                              + rec["train_rkd_distance_pre_logits"], rel=1e-4)
    tensors, _ = load_latest_checkpoint(tmp_path / "s")
    assert tensors["terms.0.adapter.weight"].shape == (16, 32)


@pytest.mark.parametrize("term,message", [
    ({"student_tap": "hidden1", "teacher_tap": "stage2", "loss": {"name": "at"}},
     r"features\[0\] \(at_hidden1\).*student tap 'hidden1' \[32\].*teacher tap 'stage2' \[16, 2, 2\].*feature maps"),
    ({"student_tap": "hidden1", "teacher_tap": "stage1", "loss": {"name": "fitnet"}},
     r"features\[0\] \(fitnet_hidden1\).*cannot be compared.*vector"),
    ({"student_tap": "hiden1", "teacher_tap": "stage1", "loss": {"name": "sp"}},
     r"features\[0\] \(sp_hiden1\)\.student_tap='hiden1'.*Did you mean 'hidden1'"),
])
def test_impossible_pairings_fail_before_training_naming_the_term(tmp_path, teachers, term, message):
    raw = {**BASE, "teacher": {"run": teachers["cnn"]}, "features": [term]}
    with pytest.raises(ConfigError, match=message):
        run(parse_config(raw), tmp_path / "s")
    assert not (tmp_path / "s" / "metrics.jsonl").exists()


def test_config_errors_for_features_name_the_key():
    def check(raw):
        from kdlab.validate import check_components

        check_components(parse_config({**BASE, **raw}))

    term = {"student_tap": "hidden1", "teacher_tap": "hidden1", "loss": {"name": "fitnet"}}
    with pytest.raises(ConfigError, match="features: feature terms compare the student with a teacher"):
        check({"features": [term]})
    teacher = {"teacher": {"run": "somewhere"}}
    with pytest.raises(ConfigError, match=r"features\[0\]\.loss: .*'fitnett'.*Did you mean 'fitnet'"):
        check({**teacher, "features": [{**term, "loss": {"name": "fitnett"}}]})
    with pytest.raises(ConfigError, match=r"features\[0\]\.loss: loss 'at': beta=-1"):
        check({**teacher, "features": [{**term, "loss": {"name": "at", "beta": -1}}]})
    with pytest.raises(ConfigError, match="repeated: fitnet_hidden1"):
        check({**teacher, "features": [term, {**term, "teacher_tap": "pre_logits"}]})
    with pytest.raises(ConfigError, match=r"hint_epochs=3 is not allowed; must be < train.epochs=3"):
        check({**teacher, "features": [term], "hint_epochs": 3})
    with pytest.raises(ConfigError, match="hint_epochs=1 needs at least one term"):
        check({"hint_epochs": 1})
    with pytest.raises(ConfigError, match=r"unknown key 'features.0.schedule.start'. Did you mean 'start_epoch'\?"):
        parse_config({**BASE, **teacher, "features": [{**term, "schedule": {"start": 2}}]})
    with pytest.raises(ConfigError, match="end_epoch=1 must be >= start_epoch=2"):
        parse_config({**BASE, **teacher, "features": [{**term, "schedule": {"start_epoch": 2, "end_epoch": 1}}]})


def test_a_config_without_features_keeps_its_identity():
    """Runs made before ``features``/``scheme`` existed keep their run-store directory."""
    import hashlib

    cfg = parse_config(BASE)
    legacy = {k: v for k, v in cfg.to_dict().items() if k not in ("features", "hint_epochs", "scheme")}
    for later_field in ("checkpoint_every", "precision", "channels_last", "device", "log"):  # later: no identity
        legacy["train"].pop(later_field)
    for later_field in ("streaming", "num_workers"):
        legacy["data"].pop(later_field)
    assert cfg.digest() == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()
    distil = parse_config({**BASE, "teacher": {"run": "t"}})
    legacy = {k: v for k, v in distil.to_dict().items() if k not in ("features", "hint_epochs", "scheme")}
    for later_field in ("checkpoint_every", "precision", "channels_last", "device", "log"):
        legacy["train"].pop(later_field)
    for later_field in ("streaming", "num_workers"):
        legacy["data"].pop(later_field)
    legacy["teacher"].pop("compile")
    legacy["teacher"].pop("stop_fraction")  # added later, at its default: no identity
    legacy["teacher"].pop("cache_topk")
    assert distil.digest() == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()
    with_term = parse_config({**BASE, "teacher": {"run": "t"}, "features": [
        {"student_tap": "hidden1", "teacher_tap": "hidden1", "loss": {"name": "fitnet"}}]})
    assert with_term.digest() != parse_config({**BASE, "teacher": {"run": "t"}}).digest()


@pytest.mark.parametrize("schedule,expected", [
    (None, [2.0, 2.0, 2.0, 2.0]),
    ({"start_epoch": 2, "end_epoch": 3}, [0.0, 2.0, 2.0, 0.0]),
    ({"warmup_epochs": 4}, [0.5, 1.0, 1.5, 2.0]),
    ({"start_epoch": 2, "warmup_epochs": 2}, [0.0, 1.0, 2.0, 2.0]),
])
def test_scheduled_weight(schedule, expected):
    sched = TermSchedule(**schedule) if schedule else None
    assert [scheduled_weight(2.0, sched, epoch) for epoch in range(4)] == expected


def test_hint_stage_trains_only_the_layers_up_to_the_hint(tmp_path, teachers):
    raw = {**BASE, "teacher": {"run": teachers["mlp"]}, "loss": {"name": "kd"}, "hint_epochs": 1,
           "model": {"name": "mlp", "width": 32, "depth": 2},
           "train": {**BASE["train"], "epochs": 2, "keep_epochs": [1]},
           "features": [{"student_tap": "hidden1", "teacher_tap": "hidden1", "loss": {"name": "fitnet"}}]}
    run(parse_config(raw), tmp_path / "s")
    torch.manual_seed(BASE["train"]["seed"])
    initial = create_model("mlp", 10, (1, 8, 8), width=32, depth=2).state_dict()
    after_hint = load_tensors(tmp_path / "s" / "checkpoints" / "epoch-0001" / "weights.safetensors")
    # above the hint layer: untouched (not even weight decay); at and below it: trained
    for key in ("hidden.1.0.weight", "head.weight", "head.bias"):
        assert torch.equal(after_hint[f"student.{key}"], initial[key]), key
    assert not torch.equal(after_hint["student.hidden.0.0.weight"], initial["hidden.0.0.weight"])
    first, second = _metrics(tmp_path / "s")
    assert "train_kd" not in first and first["train_loss"] == pytest.approx(first["train_fitnet_hidden1"])
    assert "train_kd" in second
    last = load_tensors(tmp_path / "s" / "checkpoints" / "last.safetensors")
    assert not torch.equal(last["head.weight"], initial["head.weight"])


class Interrupt(Exception):
    pass


def test_resume_with_adapters_equals_an_uninterrupted_run_and_leaves_no_hooks(tmp_path, teachers):
    raw = {**BASE, "teacher": {"run": teachers["cnn"]}, "loss": {"name": "kd"},
           "model": {"name": "cnn", "width": 0.125, "depth": 2},
           "features": [{"student_tap": "stage1", "teacher_tap": "stage1", "loss": {"name": "fitnet"},
                         "adapter_batch_norm": True},
                        {"student_tap": "stage2", "teacher_tap": "stage2", "loss": {"name": "at"}}]}
    cfg = parse_config(raw)
    seen = []
    run(cfg, tmp_path / "full", on_epoch_end=lambda record, d: seen.append(d))

    def stop(record, distiller):
        seen.append(distiller)
        if record["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(cfg, tmp_path / "resumed", on_epoch_end=stop)
    run(cfg, tmp_path / "resumed", on_epoch_end=lambda record, d: seen.append(d))
    for name in ("last.safetensors", "best.safetensors"):
        a = load_tensors(tmp_path / "full" / "checkpoints" / name)
        b = load_tensors(tmp_path / "resumed" / "checkpoints" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    full, _ = load_latest_checkpoint(tmp_path / "full")
    resumed, _ = load_latest_checkpoint(tmp_path / "resumed")
    adapter_keys = [k for k in full if k.startswith("terms.")]
    assert "terms.0.adapter.norm.running_mean" in adapter_keys   # the adapter's BN statistics resume too
    assert all(torch.equal(full[k], resumed[k]) for k in adapter_keys)
    # three runs (one interrupted): every student and teacher is hook-free afterwards
    assert len({id(d) for d in seen}) == 3
    for d in seen:
        assert no_hooks_left(d.student) and no_hooks_left(d.teacher)


def test_hooks_on_a_users_sequential_student_train_through_an_adapter():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3))
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3))
    terms = build_feature_terms([FeatureTermConfig(student_tap="2", teacher_tap="2", loss={"name": "fitnet"}),
                                 FeatureTermConfig(student_tap="1", teacher_tap="3", loss={"name": "pairwise"})],
                                student, teacher, torch.randn(2, 12))
    distiller = Distiller(student, build("kd"), teacher=teacher, terms=terms)
    assert isinstance(distiller.terms[0].adapter, nn.Linear) and distiller.terms[0].adapter.weight.shape == (10, 6)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    x, y = torch.randn(16, 12), torch.randint(0, 3, (16,))
    loss, logits, parts = distiller(x, y, torch.arange(16))
    assert logits.shape == (16, 3)
    assert set(parts) == {"ce", "kd", "fitnet_2", "pairwise_1"}
    loss.backward()
    assert distiller.terms[0].adapter.weight.grad.abs().sum() > 0
    assert student[1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not distiller.student_taps.features  # cleared after every step: no graph kept alive between steps
    distiller.close()
    distiller.close()  # idempotent
    assert no_hooks_left(student) and no_hooks_left(teacher)
