"""Offline distillation: teacher loading, freezing, the teacher-output cache and an end-to-end KD run."""

from __future__ import annotations

import pytest
import torch

from kdlab.config import parse_config
from kdlab.distill import Distiller, cache as cache_module, cached_teacher_logits, weights_digest
from kdlab.errors import ConfigError
from kdlab.io import load_tensors
from kdlab.losses import build
from kdlab.models import create_model
from kdlab.recipe import run
from kdlab.validate import check_components


@pytest.fixture
def teacher_dir(tmp_path, tiny_run):
    cfg = parse_config({**tiny_run, "model": {"name": "mlp", "width": 64, "depth": 1},
                        "train": {**tiny_run["train"], "epochs": 3}})
    run(cfg, tmp_path / "teacher")
    return tmp_path / "teacher"


def test_kd_run_end_to_end_uses_cache_and_keeps_teacher_frozen(tmp_path, tiny_run, teacher_dir, monkeypatch):
    calls = {"n": 0}
    real = cache_module.predict_logits

    def counting(model, x, batch_size=1024):
        calls["n"] += 1
        return real(model, x, batch_size)

    monkeypatch.setattr(cache_module, "predict_logits", counting)
    raw = {**tiny_run, "teacher": {"run": str(teacher_dir)}, "loss": {"name": "kd", "temperature": 4, "alpha": 0.9}}
    before = load_tensors(teacher_dir / "checkpoints/best.safetensors")
    summary = run(parse_config(raw), tmp_path / "s1")
    assert summary["test_accuracy"] > 0.7
    assert calls["n"] == 1
    # a second student with another seed reuses the cached teacher outputs
    raw2 = {**raw, "train": {**raw["train"], "seed": 4}}
    run(parse_config(raw2), tmp_path / "s2")
    assert calls["n"] == 1
    after = load_tensors(teacher_dir / "checkpoints/best.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_cache_key_changes_with_teacher_weights_and_data(tmp_path):
    torch.manual_seed(0)
    teacher = create_model("mlp", 3, (4,), width=8, depth=1)
    x = torch.randn(10, 4)
    a = cached_teacher_logits(teacher, x, "data-a", cache_dir=tmp_path)
    assert torch.allclose(a, teacher.eval()(x))
    digest = weights_digest(teacher)
    with torch.no_grad():
        next(teacher.parameters()).add_(1.0)
    assert weights_digest(teacher) != digest
    b = cached_teacher_logits(teacher, x, "data-a", cache_dir=tmp_path)
    assert not torch.allclose(a, b)
    assert torch.allclose(b, teacher(x))
    cached_teacher_logits(teacher, x, "data-b", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3


def test_teacher_with_other_class_count_is_refused(tmp_path, tiny_run):
    # a 3-class teacher on the 10-class digits
    from kdlab.models import save_model_weights

    teacher = create_model("mlp", 3, (1, 8, 8), width=8, depth=1)
    save_model_weights(tmp_path / "t.safetensors", teacher)
    raw = {**tiny_run, "teacher": {"model": {"name": "mlp", "width": 8, "depth": 1, "num_classes": 3},
                                   "weights": str(tmp_path / "t.safetensors")},
           "loss": {"name": "kd"}}
    with pytest.raises(ConfigError, match="teacher has 3 classes but the student and dataset have 10"):
        run(parse_config(raw), tmp_path / "s")


def test_missing_teacher_run_is_a_config_error(tmp_path, tiny_run):
    raw = {**tiny_run, "teacher": {"run": str(tmp_path / "nope")}, "loss": {"name": "kd"}}
    with pytest.raises(ConfigError, match="teacher.run=.*has no trained weights"):
        run(parse_config(raw), tmp_path / "s")


def test_distiller_hides_teacher_from_parameters_and_state():
    student = create_model("mlp", 3, (4,), width=8, depth=1)
    teacher = create_model("mlp", 3, (4,), width=16, depth=1)
    d = Distiller(student, build("kd"), teacher=teacher)
    assert {id(p) for p in d.parameters()} == {id(p) for p in student.parameters()}
    assert all(k.startswith(("student.", "loss.")) for k in d.state_dict())
    d.train()
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    loss, logits, _ = d(x, y, torch.arange(5))
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert logits.shape == (5, 3)


def test_seeds_are_paired_across_methods(tmp_path, tiny_run, teacher_dir):
    """Same seed -> same initial weights and batch order: KD with alpha=0 ends exactly where CE ends."""
    ce = run(parse_config(tiny_run), tmp_path / "ce")
    raw = {**tiny_run, "teacher": {"run": str(teacher_dir)}, "loss": {"name": "kd", "temperature": 4, "alpha": 0.0}}
    kd0 = run(parse_config(raw), tmp_path / "kd0")
    a = load_tensors(tmp_path / "ce" / "checkpoints" / "last.safetensors")
    b = load_tensors(tmp_path / "kd0" / "checkpoints" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ce["test_accuracy"] == kd0["test_accuracy"]


@pytest.mark.slow  # torch.compile's first call compiles (10-30 s here)
def test_compiled_teacher_gives_the_eager_outputs_and_the_same_cache_entry(tmp_path, tiny_run, teacher_dir,
                                                                            monkeypatch):
    from kdlab.data import load_dataset
    from kdlab.distill import compile_for_inference
    from kdlab.distill.teacher import teacher_weights_path
    from kdlab.models import load_model_weights, predict_logits

    teacher = load_model_weights(teacher_weights_path(teacher_dir)).eval()
    compiled = compile_for_inference(teacher)
    assert compiled is not teacher
    assert cache_module.cache_key(compiled, "d") == cache_module.cache_key(teacher, "d")
    x = load_dataset("digits", val_size=200, seed=0).train.x
    torch.testing.assert_close(predict_logits(compiled, x, 256), predict_logits(teacher, x, 256),
                               rtol=1e-5, atol=1e-5)
    # end to end: the compiled teacher builds the cache (once) and its run is a normal KD run
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path / "cache"))
    raw = {**tiny_run, "teacher": {"run": str(teacher_dir), "compile": True},
           "loss": {"name": "kd", "temperature": 4, "alpha": 0.9}}
    summary = run(parse_config(raw), tmp_path / "compiled")
    assert summary["test_accuracy"] > 0.7
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    # the eager twin of the run reuses that cache entry: compiling is not part of the run's or the cache's identity
    eager = {**raw, "teacher": {"run": str(teacher_dir)}}
    assert parse_config(eager).digest() == parse_config({**eager, "teacher": {**eager["teacher"],
                                                                              "compile": False}}).digest()
    run(parse_config(eager), tmp_path / "eager")
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    # a live compiled teacher (no cache) trains too
    live = {**raw, "teacher": {**raw["teacher"], "cache": False}, "train": {**raw["train"], "epochs": 1}}
    assert run(parse_config(live), tmp_path / "live")["test_accuracy"] > 0.3


def test_compiled_teacher_with_feature_terms_is_refused(tiny_run, teacher_dir):
    raw = {**tiny_run, "teacher": {"run": str(teacher_dir), "compile": True},
           "loss": {"name": "kd"},
           "features": [{"student_tap": "pre_logits", "teacher_tap": "pre_logits", "loss": {"name": "fitnet"}}]}
    with pytest.raises(ConfigError, match="teacher.compile=true cannot be combined with 'features'"):
        check_components(parse_config(raw))
