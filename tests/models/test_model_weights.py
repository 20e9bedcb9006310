"""A weights file rebuilds its model from the spec in its metadata; derived architectures need their builder."""

from __future__ import annotations

import pytest
import torch

from kdlab.compress import structured_prune
from kdlab.errors import ConfigError
from kdlab.models import create_model, load_model_weights, model_from_spec, save_model_weights


def test_a_saved_model_is_rebuilt_from_its_file_alone(tmp_path):
    torch.manual_seed(0)
    model = create_model("cnn", 10, (1, 8, 8), width=0.25, depth=2)
    pruned = structured_prune(model, 0.5)
    for name, original in (("plain", model), ("pruned", pruned)):
        save_model_weights(tmp_path / f"{name}.safetensors", original)
        loaded = load_model_weights(tmp_path / f"{name}.safetensors")
        assert loaded.spec == original.spec
        x = torch.randn(3, 1, 8, 8)
        torch.testing.assert_close(loaded.eval()(x), original.eval()(x), rtol=0, atol=0)


def test_a_derived_spec_without_a_registered_builder_is_refused_by_name():
    spec = {**create_model("mlp", 10, (1, 8, 8), width=8).spec, "sliced_from": {"name": "mlp"}}
    with pytest.raises(ConfigError, match="'sliced_from' marks a derived architecture with no registered builder"):
        model_from_spec(spec)
