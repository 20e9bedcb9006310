"""The contract every registered loss keeps, checked over the whole registry."""

import inspect
import json
import math

import pytest
import torch
from torch import nn

from kdlab.losses import LOSSES, ResponseLoss, build, loss_names


@pytest.mark.parametrize("name", loss_names())
def test_every_loss_keeps_the_contract(name):
    loss_fn = build(name)
    assert isinstance(loss_fn, nn.Module) and isinstance(loss_fn, ResponseLoss)
    g = torch.Generator().manual_seed(0)
    student = torch.randn(8, 10, generator=g, requires_grad=True)
    teacher = torch.randn(8, 10, generator=g) * 3 if loss_fn.requires_teacher else None
    targets = torch.randint(0, 10, (8,), generator=g)

    value = loss_fn(student, teacher, targets)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()

    again, parts = loss_fn.compute(student, teacher, targets)
    assert torch.equal(again, value)  # the call and compute() give the same objective
    assert parts and "ce" in parts
    # parts are detached 0-d tensors (read by the caller when it wants numbers: no device sync inside the loss)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad and math.isfinite(v.item())
               for v in parts.values())
    assert loss_fn.set_schedule(30) is None and loss_fn.total_epochs == 30
    assert loss_fn.set_epoch(0) is None


@pytest.mark.parametrize("name", loss_names())
def test_hyperparams_are_json_and_rebuild_the_same_loss(name):
    loss_fn = build(name)
    params = json.loads(json.dumps(loss_fn.hyperparams))
    assert params == loss_fn.hyperparams
    assert build(name, **params).hyperparams == loss_fn.hyperparams
    # every factory option is recorded, so hyperparams identify the run
    LOSSES.check_kwargs(name, params)
    assert set(params) == set(inspect.signature(LOSSES.get(name)).parameters)
