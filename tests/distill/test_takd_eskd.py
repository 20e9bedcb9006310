"""TAKD chains, early-stopped teachers (ESKD), dropping the teacher after an epoch, and starting from weights."""

from __future__ import annotations

import pytest
import torch

from kdlab.config import Component, TeacherConfig, parse_config
from kdlab.distill import Distiller, load_teacher
from kdlab.distill.takd import chain_configs, run_chain
from kdlab.errors import ConfigError
from kdlab.io import load_tensors
from kdlab.losses import build
from kdlab.models import create_model
from kdlab.recipe import run
from kdlab.store import RunStore


def _kd_base(tiny_run, epochs=2):
    return parse_config({**tiny_run, "loss": {"name": "kd", "temperature": 4, "alpha": 0.9},
                         "train": {**tiny_run["train"], "epochs": epochs}})


def test_three_step_takd_chain_end_to_end(tmp_path, tiny_run):
    base = _kd_base(tiny_run)
    models = [Component(name="mlp", width=w, depth=1) for w in (64, 32, 16, 8)]
    store = RunStore(tmp_path)
    configs = chain_configs(base, models, store.path)
    assert configs[0].teacher is None and configs[0].loss.name == "ce"
    for prev, cfg in zip(configs, configs[1:]):  # each link is distilled from the previous link's run
        assert cfg.teacher.run == str(store.path(prev)) and cfg.loss.name == "kd"
    summaries = run_chain(base, models, store)
    assert [s["params"] for s in summaries] == sorted((s["params"] for s in summaries), reverse=True)
    assert all(s["test_accuracy"] > 0.3 for s in summaries)
    assert store.trained == 4
    run_chain(base, models, store)
    assert store.reused == 4


def test_chain_needs_two_models(tiny_run):
    with pytest.raises(ValueError, match="at least a teacher and a student"):
        chain_configs(_kd_base(tiny_run), [Component(name="mlp")], lambda c: "x")


def test_eskd_uses_the_earlier_teacher_checkpoint(tmp_path, tiny_run):
    teacher_cfg = parse_config({**tiny_run, "train": {**tiny_run["train"], "epochs": 3, "keep_epochs": [1]}})
    run(teacher_cfg, tmp_path / "t")
    early = load_teacher(TeacherConfig(run=str(tmp_path / "t"), epoch=1), 10, (1, 8, 8))
    final = load_teacher(TeacherConfig(run=str(tmp_path / "t")), 10, (1, 8, 8))
    kept = load_tensors(tmp_path / "t" / "checkpoints" / "epoch-0001" / "weights.safetensors")
    for name, tensor in early.state_dict().items():
        assert torch.equal(tensor, kept["student." + name])
    assert any(not torch.equal(a, b) for a, b in zip(early.state_dict().values(), final.state_dict().values()))
    raw = {**tiny_run, "teacher": {"run": str(tmp_path / "t"), "epoch": 1}, "loss": {"name": "kd"}}
    assert run(parse_config(raw), tmp_path / "s")["test_accuracy"] > 0.3
    with pytest.raises(ConfigError, match=r"teacher.epoch=2.*kept: epoch-0001.*keep_epochs: \[2\]"):
        load_teacher(TeacherConfig(run=str(tmp_path / "t"), epoch=2), 10, (1, 8, 8))


def test_teacher_dropped_after_stop_epoch_gives_plain_ce():
    torch.manual_seed(0)
    student = create_model("mlp", 3, (4,), width=8, depth=1)
    d = Distiller(student, build("kd", temperature=2, alpha=0.9), teacher_logits=torch.randn(6, 3), stop_epoch=2)
    x, y, idx = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]), torch.arange(6)
    d.set_epoch(1)
    kd_loss, logits, _ = d(x, y, idx)
    d.set_epoch(2)
    ce_loss, _, _ = d(x, y, idx)
    assert torch.allclose(ce_loss, torch.nn.functional.cross_entropy(logits, y))
    assert not torch.allclose(kd_loss, ce_loss)


@pytest.mark.parametrize(("fraction", "epochs", "stop"), [
    (0.5, 30, 15), (0.5, 240, 120), (1 / 3, 30, 10), (1 / 3, 240, 80), (0.25, 30, 8), (0.0, 30, 0), (1.0, 30, 30),
])
def test_stop_fraction_scales_to_the_students_epochs(fraction, epochs, stop):
    teacher = TeacherConfig(run="t", stop_fraction=fraction)
    assert teacher.kd_stop_epoch(epochs) == stop  # the nearest epoch, halves up (0.25 * 30 = 7.5 -> 8)
    assert TeacherConfig(run="t", stop_epoch=12).kd_stop_epoch(epochs) == 12  # an epoch count is taken as given
    assert TeacherConfig(run="t").kd_stop_epoch(epochs) is None


def test_stop_fraction_reaches_the_distiller_and_is_exclusive_with_stop_epoch(tiny_run):
    from kdlab.distill import build_objective

    cfg = parse_config({**_kd_base(tiny_run, epochs=12).to_dict(), "teacher": {"run": "t", "stop_fraction": 0.5}})
    student = create_model("mlp", 3, (4,), width=8, depth=1)
    objective = build_objective(cfg, student, build("kd"), 3, (4,), torch.randn(2, 4), teacher_logits=torch.randn(6, 3))
    assert objective.stop_epoch == 6
    assert cfg.digest() != parse_config({**cfg.to_dict(), "teacher": {"run": "t"}}).digest()
    with pytest.raises(ConfigError, match="give stop_epoch or stop_fraction, not both"):
        parse_config({**cfg.to_dict(), "teacher": {"run": "t", "stop_epoch": 3, "stop_fraction": 0.5}})
    with pytest.raises(ConfigError, match="teacher.stop_fraction=1.5 is not allowed"):
        parse_config({**cfg.to_dict(), "teacher": {"run": "t", "stop_fraction": 1.5}})


def test_init_starts_from_given_weights(tmp_path, tiny_run):
    source = parse_config({**tiny_run, "train": {**tiny_run["train"], "epochs": 1}})
    run(source, tmp_path / "a")
    # lr 0 keeps the weights where init put them
    raw = {**tiny_run, "init": str(tmp_path / "a"), "optim": {"name": "sgd", "lr": 1e-12, "momentum": 0.0},
           "train": {**tiny_run["train"], "epochs": 1, "seed": 99}}
    run(parse_config(raw), tmp_path / "b")
    a = load_tensors(tmp_path / "a" / "checkpoints" / "best.safetensors")
    b = load_tensors(tmp_path / "b" / "checkpoints" / "last.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    bad = {**raw, "model": {"name": "mlp", "width": 7, "depth": 1}}
    with pytest.raises(ConfigError, match="does not fit model"):
        run(parse_config(bad), tmp_path / "c")
