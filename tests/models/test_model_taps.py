"""list_taps on kdlab models and on plain modules."""

from __future__ import annotations

import torch
from torch import nn

from kdlab.models import create_model, list_taps


def test_list_taps_on_a_plain_sequential_lists_every_module_path():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Sequential(nn.Linear(3, 2), nn.Tanh()))
    taps = list_taps(model)
    assert taps == ["0", "1", "2", "2.0", "2.1"]
    seen = []
    for path in taps:
        model.get_submodule(path).register_forward_hook(lambda *_args, path=path: seen.append(path))
    model(torch.zeros(1, 4))
    assert sorted(seen) == sorted(taps)


def test_list_taps_on_kdlab_models():
    assert list_taps(create_model("mlp", 10, (8,), width=4, depth=3)) == ["hidden1", "hidden2", "hidden3", "pre_logits"]
    assert list_taps(create_model("mlp", 10, (8,), depth=0)) == ["pre_logits"]
    assert list_taps(create_model("cnn", 10, (1, 28, 28), depth=3)) == ["stage1", "stage2", "stage3", "pre_logits"]
    assert list_taps(create_model("resnet20", 10, (1, 28, 28), width=0.25)) == ["stage1", "stage2", "stage3",
                                                                                 "pre_logits"]
    assert create_model("wrn", 10, (1, 8, 8)).feature_taps == {
        "stage1": "stages.0", "stage2": "stages.1", "stage3": "stages.2", "pre_logits": "pool"}
