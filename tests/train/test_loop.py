"""The training loop: resume equals an uninterrupted run, atomic checkpoints, NaN stop, schedules."""

from __future__ import annotations

import json
import math

import pytest
import torch

from kdlab.config import ScheduleConfig, parse_config
from kdlab.errors import ConfigError, TrainingDiverged
from kdlab.io import atomic_write_bytes, load_tensors
from kdlab.recipe import run
from kdlab.train import checkpoint as ckpt_module
from kdlab.train.checkpoint import load_latest_checkpoint
from kdlab.train.optim import lr_factor


class Interrupt(Exception):
    pass


def _stop_after(epoch: int):
    def callback(record, distiller):
        if record["epoch"] == epoch:
            raise Interrupt

    return callback


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, tiny_run):
    cfg = parse_config(tiny_run)
    full = run(cfg, tmp_path / "full")
    with pytest.raises(Interrupt):
        run(cfg, tmp_path / "resumed", on_epoch_end=_stop_after(2))
    assert not (tmp_path / "resumed" / "summary.json").exists()
    resumed = run(cfg, tmp_path / "resumed")
    a = load_tensors(tmp_path / "full" / "checkpoints" / "last.safetensors")
    b = load_tensors(tmp_path / "resumed" / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed["test_accuracy"] == full["test_accuracy"]
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    assert full["test_accuracy"] > 0.8  # digits is easy: a working loop learns it


def test_finished_run_is_reused_and_a_different_config_is_refused(tmp_path, tiny_run):
    cfg = parse_config({**tiny_run, "train": {**tiny_run["train"], "epochs": 1}})
    first = run(cfg, tmp_path / "r")
    mtime = (tmp_path / "r" / "summary.json").stat().st_mtime_ns
    again = run(cfg, tmp_path / "r")
    assert again == first and (tmp_path / "r" / "summary.json").stat().st_mtime_ns == mtime
    other = parse_config({**tiny_run, "train": {**tiny_run["train"], "epochs": 2}})
    with pytest.raises(ConfigError, match="different config"):
        run(other, tmp_path / "r")


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, tiny_run):
    cfg = parse_config(tiny_run)

    def poison(record, distiller):
        if record["epoch"] == 1:
            with torch.no_grad():
                next(distiller.student.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDiverged) as err:
        run(cfg, tmp_path / "r", on_epoch_end=poison)
    assert "nan" in str(err.value) and "epoch 2" in str(err.value) and "checkpoint" in str(err.value)
    tensors, state = load_latest_checkpoint(tmp_path / "r")
    assert state["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


def test_interrupted_checkpoint_write_keeps_previous_checkpoint(tmp_path, tiny_run, monkeypatch):
    cfg = parse_config(tiny_run)
    calls = {"n": 0}
    real_save_state = ckpt_module.save_state

    def failing_save_state(path, state):
        calls["n"] += 1
        if calls["n"] == 2:  # epoch 2's checkpoint dies half-way (weights written, state not)
            raise OSError("disk full")
        return real_save_state(path, state)

    monkeypatch.setattr(ckpt_module, "save_state", failing_save_state)
    with pytest.raises(OSError, match="disk full"):
        run(cfg, tmp_path / "r")
    tensors, state = load_latest_checkpoint(tmp_path / "r")
    assert state["epoch"] == 0
    assert (tmp_path / "r" / "checkpoints" / "latest").read_text().strip() == "epoch-0001"
    monkeypatch.setattr(ckpt_module, "save_state", real_save_state)
    summary = run(cfg, tmp_path / "r")  # resumes from epoch 1 and finishes
    assert summary["best_epoch"] >= 1
    assert not list((tmp_path / "r" / "checkpoints").glob(".epoch-*"))


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "a.bin"
    atomic_write_bytes(path, b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(path, 12345)  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


@pytest.mark.parametrize("name,step,expected", [
    ("constant", 50, 1.0),
    ("step", 25, 0.1),        # epoch 2 >= milestone 2
    ("cosine", 0, 1.0),
    ("cosine", 100, 0.5 * (1 + math.cos(math.pi * 100 / 400))),
])
def test_lr_schedules(name, step, expected):
    cfg = ScheduleConfig(name=name, milestones=[2], gamma=0.1)
    assert lr_factor(step, 10, 40, cfg, 0.1) == pytest.approx(expected)


def test_warmup_is_linear():
    cfg = ScheduleConfig(name="cosine", warmup_epochs=1)
    assert [lr_factor(s, 4, 10, cfg, 0.1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 10, cfg, 0.1) == pytest.approx(1.0)


def test_checkpoint_state_is_loaded_without_unpickling(tmp_path, tiny_run):
    cfg = parse_config({**tiny_run, "train": {**tiny_run["train"], "epochs": 1}})
    run(cfg, tmp_path / "r")
    state_file = next((tmp_path / "r" / "checkpoints").glob("epoch-*/state.pt"))
    torch.load(state_file, weights_only=True)  # must not need arbitrary pickles


def test_sparse_checkpoints_still_resume_exactly(tmp_path, tiny_run):
    raw = {**tiny_run, "train": {**tiny_run["train"], "epochs": 5, "checkpoint_every": 2}}
    cfg = parse_config(raw)
    assert cfg.digest() != parse_config(tiny_run).digest()
    assert parse_config({**tiny_run, "train": {**tiny_run["train"], "checkpoint_every": 1}}).digest() == \
        parse_config(tiny_run).digest()  # the default is not part of a run's identity
    full = run(cfg, tmp_path / "full")
    with pytest.raises(Interrupt):
        run(cfg, tmp_path / "resumed", on_epoch_end=_stop_after(3))
    _, state = load_latest_checkpoint(tmp_path / "resumed")
    assert state["epoch"] == 1  # epochs 2 was the last checkpoint (0-based 1)
    resumed = run(cfg, tmp_path / "resumed")
    a = load_tensors(tmp_path / "full" / "checkpoints" / "best.safetensors")
    b = load_tensors(tmp_path / "resumed" / "checkpoints" / "best.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["best_epoch"] == full["best_epoch"] and resumed["test_accuracy"] == full["test_accuracy"]


def test_bf16_autocast_and_channels_last_train_a_conv_net(tmp_path, tiny_run):
    """Both switches are off by default (not part of a run's identity then) and, when on, still learn digits."""
    base = {**tiny_run, "model": {"name": "cnn", "width": 0.25, "depth": 2}}
    assert parse_config({**base, "train": {**base["train"], "precision": "fp32", "channels_last": False}}).digest() \
        == parse_config(base).digest()
    raw = {**base, "train": {**base["train"], "precision": "bf16", "channels_last": True}}
    summary = run(parse_config(raw), tmp_path / "r")
    assert summary["test_accuracy"] > 0.5
    lines = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(line["train_loss"]) for line in lines)
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    with pytest.raises(ConfigError, match="train.precision='fp8'"):
        parse_config({**base, "train": {**base["train"], "precision": "fp8"}})


def test_fp16_trains_with_a_grad_scaler_whose_state_resumes_exactly(tmp_path, tiny_run):
    """fp16 autocast + dynamic loss scaling (CPU here; the same code path runs on CUDA): it learns, the scaler's
    state is in the checkpoint, and a run interrupted after epoch 2 ends with the weights of an uninterrupted one."""
    cfg = parse_config({**tiny_run, "train": {**tiny_run["train"], "precision": "fp16"}})
    full = run(cfg, tmp_path / "full")
    assert full["test_accuracy"] > 0.5
    _, state = load_latest_checkpoint(tmp_path / "full")
    assert state["scaler"]["scale"] > 0 and state["scaler"]["_growth_tracker"] > 0
    with pytest.raises(Interrupt):
        run(cfg, tmp_path / "resumed", on_epoch_end=_stop_after(2))
    run(cfg, tmp_path / "resumed")
    a = load_tensors(tmp_path / "full" / "checkpoints" / "last.safetensors")
    b = load_tensors(tmp_path / "resumed" / "checkpoints" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # fp32 runs store no scaler state
    run(parse_config({**tiny_run, "train": {**tiny_run["train"], "epochs": 1}}), tmp_path / "fp32")
    assert load_latest_checkpoint(tmp_path / "fp32")[1]["scaler"] is None


def test_the_fp16_scaler_skips_a_step_whose_gradients_overflow():
    from kdlab.train.device import grad_scaler

    layer = torch.nn.Linear(3, 1)
    before = layer.weight.detach().clone()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    scaler = grad_scaler(torch.device("cpu"), "fp16")
    start = scaler.get_scale()
    scaler.scale(layer(torch.tensor([[1.0, 2.0, 3.0]])).sum() * float("inf")).backward()
    scaler.step(optimizer)
    scaler.update()
    assert torch.equal(layer.weight, before)  # step skipped
    assert scaler.get_scale() == start * 0.5  # and the scale backed off
    assert not grad_scaler(torch.device("cpu"), "bf16").is_enabled()


def test_device_is_resolved_before_any_training(tmp_path, tiny_run):
    from kdlab.train import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    # the default is not part of a run's identity; an explicit device is an execution setting too
    assert parse_config({**tiny_run, "train": {**tiny_run["train"], "device": "auto"}}).digest() == \
        parse_config(tiny_run).digest()
    with pytest.raises(ConfigError, match="train.device='gpu'"):
        parse_config({**tiny_run, "train": {**tiny_run["train"], "device": "gpu"}})
    if not torch.cuda.is_available():
        cfg = parse_config({**tiny_run, "train": {**tiny_run["train"], "device": "cuda:1"}})
        with pytest.raises(ConfigError, match=r"train.device='cuda:1' but CUDA is not available"):
            run(cfg, tmp_path / "r")
        assert not (tmp_path / "r").exists()  # refused before the run directory is claimed


def test_channels_last_is_on_for_conv_nets_by_default_and_never_part_of_a_runs_identity(tmp_path, tiny_run):
    from kdlab.models import create_model
    from kdlab.train.device import use_channels_last

    cnn = create_model("cnn", 10, (1, 8, 8), width=0.25, depth=2)
    mlp = create_model("mlp", 10, (1, 8, 8), width=8, depth=1)
    assert use_channels_last(None, cnn) and not use_channels_last(None, mlp)
    assert not use_channels_last(False, cnn) and use_channels_last(True, mlp)
    base = {**tiny_run, "model": {"name": "cnn", "width": 0.25, "depth": 2}, "train": {**tiny_run["train"], "epochs": 1}}
    digests = {parse_config({**base, "train": {**base["train"], "channels_last": flag}}).digest()
               for flag in (None, True, False)}
    assert len(digests) == 1
    layouts = []

    def record(_, distiller):
        conv = [m for m in distiller.student.modules() if isinstance(m, torch.nn.Conv2d)][-1]  # > 1 input channel
        layouts.append((conv.weight.is_contiguous(memory_format=torch.channels_last), conv.weight.is_contiguous()))

    run(parse_config(base), tmp_path / "auto", on_epoch_end=record)
    run(parse_config({**base, "train": {**base["train"], "channels_last": False}}), tmp_path / "off",
        on_epoch_end=record)
    assert layouts == [(True, False), (False, True)]
