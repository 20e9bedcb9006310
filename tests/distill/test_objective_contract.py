"""Every objective the loop trains keeps one contract: a step returns StepOutput(loss, logits, parts) with the parts
as detached 0-d tensors, and ``student``, ``set_epoch`` and ``close`` exist (no probing in the loop)."""

from __future__ import annotations

import pytest
import torch

from kdlab.config import FeatureTermConfig, parse_config
from kdlab.distill import Distiller, Objective, StepOutput, build_feature_terms, build_objective
from kdlab.losses import build
from kdlab.models import create_model
from kdlab.protect.skeptical import SkepticalObjective

IN_SHAPE, CLASSES = (1, 8, 8), 4


def _student():
    torch.manual_seed(0)
    return create_model("cnn", CLASSES, IN_SHAPE, width=0.25, depth=2)


def _scheduled(loss, epochs=10):
    loss.set_schedule(epochs)  # as the recipe does: DKD's warm-up is a fraction of the run
    return loss


def _scheme(scheme, loss="ce"):
    cfg = parse_config({"model": {"name": "cnn", "width": 0.25, "depth": 2}, "loss": {"name": loss},
                        "scheme": scheme})
    return build_objective(cfg, _student(), build(loss), CLASSES, IN_SHAPE, torch.randn(2, *IN_SHAPE))


def _distiller_with_terms():
    student, teacher = _student(), create_model("cnn", CLASSES, IN_SHAPE, width=0.5, depth=2)
    terms = build_feature_terms([FeatureTermConfig(student_tap="stage1", teacher_tap="stage1",
                                                   loss={"name": "rkd"})], student, teacher,
                                  torch.randn(2, *IN_SHAPE))
    return Distiller(student, build("kd"), teacher=teacher, terms=terms)


OBJECTIVES = {
    "distiller, cached logits": (lambda: Distiller(_student(), _scheduled(build("dkd")),
                                                   teacher_logits=torch.randn(6, CLASSES)), {"ce", "tckd", "nckd"}),
    "distiller, feature term": (_distiller_with_terms, {"ce", "kd", "rkd_stage1", "rkd_stage1_distance",
                                                        "rkd_stage1_angle"}),
    "dml": (lambda: _scheme({"name": "dml", "peers": [{"name": "mlp", "width": 8}]}), {"ce", "kl", "ce_peer1",
                                                                                        "kl_peer1"}),
    "joint": (lambda: _scheme({"name": "joint", "teacher": {"name": "mlp", "width": 8}}, loss="kd"),
              {"ce", "kd", "teacher_ce"}),
    "byot": (lambda: _scheme({"name": "byot", "taps": ["stage1"]}), {"ce", "stage1_ce", "stage1_kl", "stage1_hint"}),
    "skeptical": (lambda: SkepticalObjective(_student(), build("kd"), "stage1", torch.randn(2, *IN_SHAPE), CLASSES,
                                             teacher_logits=torch.randn(6, CLASSES), self_distill=0.3),
                  {"aux_ce", "aux_kd", "final_ce", "self_distill"}),
}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objective_keeps_the_step_contract(name):
    make, expected_parts = OBJECTIVES[name]
    objective = make()
    assert isinstance(objective, Objective)
    objective.set_epoch(0)
    objective.train()
    x, y, index = torch.randn(6, *IN_SHAPE), torch.tensor([0, 1, 2, 3, 0, 1]), torch.arange(6)
    out = objective(x, y, index)
    assert isinstance(out, StepOutput)
    assert out.loss.dim() == 0 and out.loss.requires_grad and torch.isfinite(out.loss)
    assert out.logits.shape == (6, CLASSES)
    torch.testing.assert_close(out.logits, objective.student(x), rtol=0, atol=0)
    assert set(out.parts) == expected_parts
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad and torch.isfinite(v)
               for v in out.parts.values())
    out.loss.backward()
    assert all(p.grad is not None for p in objective.student.parameters() if p.requires_grad)
    objective.close()
    objective.close()  # idempotent
