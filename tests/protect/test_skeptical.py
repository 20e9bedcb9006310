"""The skeptical student: its auxiliary head, where each term's gradient goes, and one run end to end on digits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kdlab.config import parse_config
from kdlab.errors import ConfigError
from kdlab.io import load_tensors
from kdlab.losses import build
from kdlab.models import create_model
from kdlab.protect import AuxiliaryHead, SkepticalObjective, SkepticalRunConfig, run_skeptical
from kdlab.recipe import run


def test_auxiliary_head_pools_feature_maps_and_applies_its_layers():
    head = AuxiliaryHead((2, 2, 2), num_classes=2, hidden=0)
    with torch.no_grad():
        head.mlp.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, -1.0]]))
        head.mlp.bias.copy_(torch.tensor([0.5, 0.0]))
    # channel 0 averages to (1 + 2 + 3 + 6) / 4 = 3, channel 1 to (0 + 0 + 4 + 0) / 4 = 1
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]], [[0.0, 0.0], [4.0, 0.0]]]])
    assert torch.allclose(head(x), torch.tensor([[3.5, 2.0]]))
    mlp = AuxiliaryHead((5,), num_classes=3, hidden=7)
    assert [type(m).__name__ for m in mlp.mlp] == ["Linear", "ReLU", "Linear"]
    assert mlp(torch.randn(4, 5)).shape == (4, 3)
    with pytest.raises(ConfigError, match=r"\[2, 3\]"):
        AuxiliaryHead((2, 3), num_classes=3)


def _objective(ce_weight=1.0, kd_weight=1.0, self_distill=0.0, tap="hidden1"):
    torch.manual_seed(0)
    student = create_model("mlp", 3, (6,), width=8, depth=2)
    teacher_logits = torch.randn(10, 3) * 3
    objective = SkepticalObjective(student, build("kd", temperature=4.0, alpha=0.9), tap, torch.randn(2, 6), 3,
                                   teacher_logits=teacher_logits, hidden=5, ce_weight=ce_weight,
                                   kd_weight=kd_weight, self_distill=self_distill)
    return objective, teacher_logits


def _grads(objective, x, y):
    objective.zero_grad(set_to_none=True)
    loss, final, _ = objective(x, y, torch.arange(len(y)))
    loss.backward()

    def has(module):
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    s = objective.student
    return {"layer1": has(s.hidden[0]), "layer2": has(s.hidden[1]), "final_head": has(s.head),
            "aux_head": has(objective.aux_head)}, loss, final


def test_kd_term_reaches_the_auxiliary_head_and_the_layers_below_the_tap_only():
    objective, _ = _objective(ce_weight=0.0)
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    grads, _, _ = _grads(objective, x, y)
    assert grads == {"layer1": True, "layer2": False, "final_head": False, "aux_head": True}


def test_ce_term_reaches_the_final_head_and_not_the_auxiliary_head():
    objective, _ = _objective(kd_weight=0.0)
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    grads, _, _ = _grads(objective, x, y)
    assert grads == {"layer1": True, "layer2": True, "final_head": True, "aux_head": False}


def test_self_distillation_links_the_final_head_to_the_auxiliary_head():
    objective, _ = _objective(ce_weight=0.0, self_distill=0.3)
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    grads, _, _ = _grads(objective, x, y)
    assert grads["final_head"] and grads["aux_head"]


def test_objective_value_is_the_weighted_sum_of_its_terms():
    objective, teacher_logits = _objective(ce_weight=0.7, kd_weight=2.0, self_distill=0.3)
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    loss, final, parts = objective(x, y, torch.arange(10))
    student = objective.student
    assert torch.allclose(final, student(x))
    aux = objective.aux_head(student.hidden[0](student.flatten(x)))
    kd = build("kd", temperature=4.0, alpha=0.9)(aux, teacher_logits, y)
    log_final, log_aux = torch.log_softmax(final / 4, -1), torch.log_softmax(aux / 4, -1)
    sd = (log_final.exp() * (log_final - log_aux)).sum(-1).mean()
    expected = 2.0 * kd + 0.7 * F.cross_entropy(final, y) + 0.3 * sd
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(parts) == {"aux_ce", "aux_kd", "final_ce", "self_distill"}
    assert parts["final_ce"].item() == pytest.approx(F.cross_entropy(final, y).item(), rel=1e-6)
    # the teacher is not part of the trainable state; the auxiliary head is
    keys = set(objective.state_dict())
    assert any(k.startswith("aux_head.") for k in keys) and not any(k.startswith("teacher") for k in keys)
    objective.close()
    assert not objective._taps.active


def test_conv_student_tap_and_a_live_teacher():
    torch.manual_seed(0)
    student = create_model("cnn", 3, (1, 8, 8), width=0.25, depth=2)
    teacher = create_model("mlp", 3, (1, 8, 8), width=8, depth=1)
    objective = SkepticalObjective(student, build("kd"), "stage1", torch.randn(2, 1, 8, 8), 3, teacher=teacher)
    assert objective.aux_head.pool
    loss, final, _ = objective(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]), torch.arange(4))
    loss.backward()
    assert final.shape == (4, 3) and all(p.grad is None for p in teacher.parameters())
    assert not teacher.training and "teacher" not in dict(objective.named_children())


def test_bad_tap_and_weights_are_config_errors():
    student = create_model("mlp", 3, (6,), width=8, depth=2)
    with pytest.raises(ConfigError, match="unknown feature tap 'hiden1'.*Did you mean 'hidden1'"):
        SkepticalObjective(student, build("kd"), "hiden1", torch.randn(2, 6), 3, teacher_logits=torch.zeros(1, 3))
    with pytest.raises(ConfigError, match="skeptical.ce_weight=-1"):
        SkepticalObjective(student, build("kd"), "hidden1", torch.randn(2, 6), 3, teacher_logits=torch.zeros(1, 3), ce_weight=-1)


def test_skeptical_run_exports_only_the_student_and_is_reused(tmp_path, tiny_run):
    teacher_cfg = parse_config({**tiny_run, "model": {"name": "mlp", "width": 64, "depth": 1},
                                "train": {**tiny_run["train"], "epochs": 3}})
    run(teacher_cfg, tmp_path / "teacher")
    student_run = {**tiny_run, "model": {"name": "mlp", "width": 32, "depth": 2},
                   "teacher": {"run": str(tmp_path / "teacher")}, "loss": {"name": "kd", "temperature": 4.0},
                   "train": {**tiny_run["train"], "epochs": 3}}
    cfg = SkepticalRunConfig.model_validate({"run": student_run, "skeptical": {"tap": "hidden1", "hidden": 16}})
    summary = run_skeptical(cfg, tmp_path / "sk")
    assert 0.5 < summary["test_accuracy"] <= 1
    exported = load_tensors(tmp_path / "sk" / "checkpoints" / "best.safetensors")
    plain = create_model("mlp", 10, (1, 8, 8), width=32, depth=2)
    plain.load_state_dict(exported, strict=True)  # exactly the student: no auxiliary-head tensors
    resumable = load_tensors(next((tmp_path / "sk" / "checkpoints").glob("epoch-*/weights.safetensors")))
    assert any(k.startswith("aux_head.") for k in resumable)
    assert run_skeptical(cfg, tmp_path / "sk") == summary
    other = SkepticalRunConfig.model_validate({"run": student_run, "skeptical": {"tap": "hidden2"}})
    with pytest.raises(ConfigError, match="different config"):
        run_skeptical(other, tmp_path / "sk")
    no_teacher = SkepticalRunConfig.model_validate({"run": {**student_run, "teacher": None, "loss": {"name": "ce"}},
                                                    "skeptical": {"tap": "hidden1"}})
    with pytest.raises(ConfigError, match="run.teacher is missing"):
        run_skeptical(no_teacher, tmp_path / "sk2")
