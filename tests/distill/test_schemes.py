"""Online (DML, joint) and self-distillation (BYOT, born-again) schemes: objectives, end-to-end runs, errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.config import Component, parse_config
from kdlab.distill.schemes import born_again, born_again_configs
from kdlab.distill.schemes.byot import SelfDistillationLoss
from kdlab.distill.schemes.dml import MutualLearningLoss
from kdlab.distill.schemes.joint import JointLoss
from kdlab.errors import ConfigError
from kdlab.io import load_tensors
from kdlab.losses import build
from kdlab.models import create_model
from kdlab.recipe import run
from kdlab.store import RunStore
from kdlab.train.checkpoint import load_latest_checkpoint
from kdlab.validate import check_components

BASE = {
    "data": {"name": "digits", "val_size": 200, "seed": 0, "train_subset": 500},
    "model": {"name": "mlp", "width": 32, "depth": 2},
    "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "train": {"epochs": 3, "batch_size": 64, "seed": 1, "progress": False},
}
STUDENT_KEYS = set(create_model("mlp", 10, (1, 8, 8), width=32, depth=2).state_dict())


def no_hooks_left(model: nn.Module) -> bool:
    return all(not m._forward_hooks for m in model.modules())


def _last_metrics(run_dir):
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


# -- objectives on hand-made tensors ----------------------------------------------------------------------------


def test_mutual_learning_targets_are_the_mean_of_the_other_peers_and_fixed():
    torch.manual_seed(0)
    z = [torch.randn(5, 4, requires_grad=True) for _ in range(3)]
    y = torch.tensor([0, 1, 2, 3, 0])
    loss = MutualLearningLoss(build("ce"), temperature=2.0, weight=0.5)
    total, parts = loss.compute(z, y)
    p = [F.softmax(t.detach() / 2.0, dim=1) for t in z]
    expected = 0.0
    for k in range(3):
        target = sum(p[j] for j in range(3) if j != k) / 2
        kl = (target * (target.log() - F.log_softmax(z[k].detach() / 2.0, dim=1))).sum(1).mean() * 4.0
        expected = expected + F.cross_entropy(z[k].detach(), y) + 0.5 * kl
        suffix = "" if k == 0 else f"_peer{k}"
        assert parts[f"kl{suffix}"].item() == pytest.approx(float(kl), rel=1e-5)
    assert float(total.detach()) == pytest.approx(float(expected), rel=1e-5)
    # peer 0's gradient is that of its own objective alone: the others' predictions are fixed targets
    total.backward()
    own = F.cross_entropy(z[0], y) + 0.5 * 4.0 * (
        ((p[1] + p[2]) / 2) * (((p[1] + p[2]) / 2).log() - F.log_softmax(z[0] / 2.0, dim=1))).sum(1).mean()
    (grad,) = torch.autograd.grad(own, z[0])
    assert torch.allclose(z[0].grad, grad, atol=1e-6)


def test_joint_loss_trains_the_teacher_on_labels_only():
    torch.manual_seed(0)
    s, t = torch.randn(6, 3, requires_grad=True), torch.randn(6, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = JointLoss(build("kd", temperature=2.0, alpha=0.7))
    total, parts = loss.compute(s, t, y)
    total.backward()
    (teacher_grad,) = torch.autograd.grad(F.cross_entropy(t, y), t)
    assert torch.allclose(t.grad, teacher_grad, atol=1e-6)     # no gradient from the student's KD term
    assert set(parts) == {"ce", "kd", "teacher_ce"}
    assert float(total.detach()) == pytest.approx(parts["teacher_ce"].item() + 0.3 * parts["ce"].item()
                                                  + 0.7 * parts["kd"].item(), rel=1e-5)


def test_self_distillation_loss_matches_the_formula():
    torch.manual_seed(0)
    z_final, f_final = torch.randn(4, 3), torch.rand(4, 5)
    z_aux, f_aux = torch.randn(4, 3, requires_grad=True), torch.rand(4, 5, requires_grad=True)
    y = torch.tensor([0, 1, 2, 1])
    loss = SelfDistillationLoss(build("ce"), ["stage1"], alpha=0.3, hint_weight=0.03, temperature=3.0)
    total, parts = loss.compute(z_final, f_final, [z_aux], [f_aux], y)
    p_final = F.softmax(z_final / 3.0, dim=1)
    kl = (p_final * (p_final.log() - F.log_softmax(z_aux / 3.0, dim=1))).sum(1).mean()
    hint = ((f_aux - f_final) ** 2).sum(1).mean()
    expected = F.cross_entropy(z_final, y) + 0.7 * F.cross_entropy(z_aux, y) + 0.3 * kl + 0.03 * hint
    assert float(total.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert parts["stage1_hint"].item() == pytest.approx(float(hint.detach()), rel=1e-5)
    assert set(parts) == {"ce", "stage1_ce", "stage1_kl", "stage1_hint"}


# -- end to end on tiny digits ----------------------------------------------------------------------------------


def test_dml_trains_every_peer_and_exports_peer_zero(tmp_path):
    raw = {**BASE, "scheme": {"name": "dml", "peers": [{"name": "mlp", "width": 16, "depth": 1}]}}
    seen = []
    summary = run(parse_config(raw), tmp_path / "r", on_epoch_end=lambda record, d: seen.append(d))
    assert summary["test_accuracy"] > 0.5 and summary["scheme"]["name"] == "dml"
    rec = _last_metrics(tmp_path / "r")
    assert rec["train_loss"] == pytest.approx(rec["train_ce"] + rec["train_kl"] + rec["train_ce_peer1"]
                                              + rec["train_kl_peer1"], rel=1e-4)
    assert rec["train_kl"] > 0 and rec["train_ce_peer1"] < math.log(10)   # the peer learns too
    tensors, _ = load_latest_checkpoint(tmp_path / "r")
    assert tensors["peers.0.hidden.0.0.weight"].shape == (16, 64)
    assert set(load_tensors(tmp_path / "r" / "checkpoints" / "best.safetensors")) == STUDENT_KEYS
    # the peer is evaluated as well as trained: it is better than chance on held-out data
    peer = seen[-1].peers[0].eval()
    from kdlab.data import load_dataset

    data = load_dataset("digits", val_size=200, seed=0)
    with torch.no_grad():
        assert (peer(data.test.x).argmax(1) == data.test.y).float().mean() > 0.5


def test_joint_training_trains_the_teacher_from_scratch(tmp_path):
    raw = {**BASE, "loss": {"name": "kd", "temperature": 4, "alpha": 0.5},
           "scheme": {"name": "joint", "teacher": {"name": "mlp", "width": 64, "depth": 1}}}
    cfg = parse_config(raw)
    check_components(cfg)   # kd without a teacher section is fine: the scheme brings the teacher
    summary = run(cfg, tmp_path / "r")
    assert summary["test_accuracy"] > 0.5
    rec = _last_metrics(tmp_path / "r")
    assert rec["train_loss"] == pytest.approx(rec["train_teacher_ce"] + 0.5 * rec["train_ce"] + 0.5 * rec["train_kd"],
                                              rel=1e-4)
    tensors, _ = load_latest_checkpoint(tmp_path / "r")
    torch.manual_seed(1)
    create_model("mlp", 10, (1, 8, 8), width=32, depth=2)
    initial_teacher = create_model("mlp", 10, (1, 8, 8), width=64, depth=1).state_dict()
    assert not torch.equal(tensors["teacher.head.weight"], initial_teacher["head.weight"])
    assert set(load_tensors(tmp_path / "r" / "checkpoints" / "best.safetensors")) == STUDENT_KEYS


def test_byot_heads_learn_from_the_deepest_classifier_and_leave_no_hooks(tmp_path):
    raw = {**BASE, "model": {"name": "cnn", "width": 0.25, "depth": 3}, "scheme": {"name": "byot"}}
    seen = []
    summary = run(parse_config(raw), tmp_path / "r", on_epoch_end=lambda record, d: seen.append(d))
    assert summary["test_accuracy"] > 0.3
    rec = _last_metrics(tmp_path / "r")
    parts = {"ce", "stage1_ce", "stage1_kl", "stage1_hint", "stage2_ce", "stage2_kl", "stage2_hint"}
    assert {f"train_{p}" for p in parts} <= set(rec)
    expected = rec["train_ce"] + sum(0.7 * rec[f"train_{t}_ce"] + 0.3 * rec[f"train_{t}_kl"]
                                     + 0.03 * rec[f"train_{t}_hint"] for t in ("stage1", "stage2"))
    assert rec["train_loss"] == pytest.approx(expected, rel=1e-4)
    tensors, _ = load_latest_checkpoint(tmp_path / "r")
    # heads: stage1 [8, 4, 4] and stage2 [16, 2, 2] pooled, bottleneck to the final feature width 32
    assert tensors["heads.stage1.bottleneck.0.weight"].shape == (32, 8)
    assert tensors["heads.stage2.bottleneck.0.weight"].shape == (32, 16)
    exported = load_tensors(tmp_path / "r" / "checkpoints" / "best.safetensors")
    assert not any("heads" in k for k in exported)
    assert no_hooks_left(seen[-1].student)


def test_born_again_chain_teaches_each_generation_with_the_previous(tmp_path):
    cfg = parse_config({**BASE, "model": {"name": "mlp", "width": 16, "depth": 1}})
    store = RunStore(tmp_path / "store")
    summaries = born_again(cfg, 2, store)
    assert [s["loss"]["name"] for s in summaries] == ["ce", "kd", "kd"]
    assert summaries[0]["teacher"] is None
    assert summaries[1]["teacher"]["run"] == summaries[0]["run_dir"]
    assert summaries[2]["teacher"]["run"] == summaries[1]["run_dir"]
    assert summaries[1]["loss"] == {"name": "kd", "temperature": 1.0, "alpha": 1.0}
    assert all(s["test_accuracy"] > 0.5 for s in summaries)
    # generation 0 is the plain CE run of the config: shared with any study that trains that baseline
    assert summaries[0]["run_dir"] == str(store.path(cfg))
    again = born_again(cfg, 2, store)
    assert store.trained == 3 and store.reused == 3 and again == summaries
    chain = born_again_configs(cfg, 1, store.path, loss=Component(name="kd", temperature=2.0, alpha=0.5))
    assert chain[1].loss.as_dict() == {"name": "kd", "temperature": 2.0, "alpha": 0.5}


def test_born_again_refuses_a_bad_distillation_loss_before_any_generation_trains(tmp_path):
    cfg = parse_config({**BASE, "model": {"name": "mlp", "width": 16, "depth": 1}})
    store = RunStore(tmp_path / "store")
    with pytest.raises(ConfigError, match=r"born-again loss: .*'kdd'"):
        born_again(cfg, 1, store, loss=Component(name="kdd"))
    with pytest.raises(ConfigError, match=r"born-again loss: .*temprature"):
        born_again(cfg, 1, store, loss=Component(name="kd", temprature=2.0))
    assert store.trained == 0 and not (tmp_path / "store").exists()


@pytest.mark.parametrize("scheme,extra,message", [
    ({"name": "dmll"}, {}, r"scheme.name: unknown scheme 'dmll'. Did you mean 'dml'\?"),
    ({"name": "ban"}, {}, "not a single run.*born_again"),
    ({"name": "dml"}, {}, r"missing key 'scheme.peers'"),
    ({"name": "dml", "peers": [{"name": "mlp", "widht": 3}]}, {}, r"scheme.peers\[0\]: .*'widht'.*Did you mean"),
    ({"name": "dml", "peers": [{"name": "mlp"}], "temperature": 0}, {}, r"scheme.temperature=0 is not allowed"),
    ({"name": "dml", "peers": [{"name": "mlp"}]}, {"loss": {"name": "kd"}}, "loss.name='kd' needs a pretrained"),
    ({"name": "byot"}, {"teacher": {"run": "t"}}, "remove the 'teacher' section"),
    ({"name": "joint", "teacher": {"name": "cnn"}}, {"features": [
        {"student_tap": "hidden1", "teacher_tap": "stage1", "loss": {"name": "at"}}]}, "cannot be combined"),
    ({"name": "byot", "alpha": 2}, {}, r"scheme.alpha=2 is not allowed"),
])
def test_scheme_config_errors_name_the_key(scheme, extra, message):
    with pytest.raises(ConfigError, match=message):
        check_components(parse_config({**BASE, "scheme": scheme, **extra}))


def test_byot_needs_an_intermediate_tap(tmp_path):
    raw = {**BASE, "model": {"name": "mlp", "width": 8, "depth": 1}, "scheme": {"name": "byot"}}
    with pytest.raises(ConfigError, match="no intermediate tap.*scheme.taps"):
        run(parse_config(raw), tmp_path / "r")
    raw["scheme"] = {"name": "byot", "taps": ["hiden1"]}
    with pytest.raises(ConfigError, match=r"scheme.taps\[0\]='hiden1'.*Did you mean 'hidden1'"):
        run(parse_config(raw), tmp_path / "r2")
