"""Models from outside kdlab's registry (a user's factory, Hugging Face, timm, torchvision) and teachers' weights
from state-dict files: built, rebuilt from their spec, and refused with a clear message when wrong."""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from kdlab.errors import ConfigError
from kdlab.models import build_model, check_model, load_model_weights, read_state_dict, save_model_weights
from kdlab.models.outputs import logits_of, model_logits

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
TINY_VIT = {"model_type": "vit", "image_size": 8, "num_channels": 1, "patch_size": 4, "hidden_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16}


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's module on the import path with a factory taking num_classes and its own options."""
    (tmp_path / "my_models.py").write_text(
        "from torch import nn\n"
        "def make_net(num_classes, hidden=4, in_shape=None):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))\n"
        "def not_a_module(num_classes):\n"
        "    return 42\n"
        "VALUE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_models"
    sys.modules.pop("my_models", None)


def test_logits_of_reads_every_output_shape():
    z = torch.randn(2, 3)

    class WithLogits:
        logits = z

    assert logits_of(z) is z
    assert logits_of((z, torch.zeros(2, 5))) is z
    assert logits_of({"logits": z, "hidden_states": None}) is z
    assert logits_of(WithLogits()) is z
    with pytest.raises(TypeError, match="without a 'logits' entry"):
        logits_of({"features": z})
    with pytest.raises(TypeError, match="holds no logits"):
        logits_of(3)

    class NamedInputs(nn.Module):
        def forward(self, input_ids, attention_mask):
            return {"logits": (input_ids * attention_mask).float()}

    ids, mask = torch.tensor([[1, 2], [3, 4]]), torch.tensor([[1, 0], [1, 1]])
    assert torch.equal(model_logits(NamedInputs(), {"input_ids": ids, "attention_mask": mask}),
                       torch.tensor([[1.0, 0.0], [3.0, 4.0]]))


def test_a_python_factory_gets_the_class_count_and_its_options(user_module, tmp_path):
    section = {"source": "python", "target": f"{user_module}:make_net", "hidden": 5}
    check_model(section)
    model = build_model(section, num_classes=3, in_shape=(6,))
    assert model[3].out_features == 3 and model[1].out_features == 5
    assert model.spec == {**section, "num_classes": 3, "in_shape": [6]}
    # the weights file rebuilds it from its spec
    path = save_model_weights(tmp_path / "w.safetensors", model)
    again = load_model_weights(path)
    x = torch.randn(4, 6)
    assert torch.equal(again(x), model(x))


@pytest.mark.parametrize("target,message", [
    ("my_models:nothing", "has no attribute 'nothing'"),
    ("no_such_module:f", "cannot be imported"),
    ("my_models:VALUE", "not a callable"),
    ("my_models", "package.module:factory"),
])
def test_a_python_target_that_cannot_build_is_refused(user_module, target, message):
    with pytest.raises(ConfigError, match=message):
        check_model({"source": "python", "target": target})


def test_python_options_are_checked_against_the_signature(user_module):
    with pytest.raises(ConfigError, match=r"option 'hiden' is not a parameter.*Did you mean 'hidden'"):
        check_model({"source": "python", "target": f"{user_module}:make_net", "hiden": 3})
    with pytest.raises(ConfigError, match="not a torch.nn.Module"):
        build_model({"source": "python", "target": f"{user_module}:not_a_module"}, 3, (6,))


def test_missing_optional_packages_name_the_extra(monkeypatch):
    for package, source, extra in (("transformers", "huggingface", "hf"), ("timm", "timm", "timm"),
                                   ("torchvision", "torchvision", "torchvision")):
        monkeypatch.setitem(sys.modules, package, None)  # as if not installed
        section = {"source": source, **({"path": "x"} if source == "huggingface" else {"name": "resnet18"})}
        with pytest.raises(ConfigError, match=rf"pip install 'kdlab\[{extra}\]'"):
            check_model(section)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_torchvision_source_without_torchvision_fails_clearly():
    with pytest.raises(ConfigError, match=r"model.source=torchvision needs .*torchvision.*kdlab\[torchvision\]"):
        build_model({"source": "torchvision", "name": "resnet18"}, 10, (3, 32, 32))


@pytest.mark.parametrize("package", ["torchvision", "timm"])
def test_torchvision_and_timm_models_build_when_installed(package):
    try:
        __import__(package)
    except Exception as exc:  # noqa: BLE001  (absent, or a build for another torch: that path is tested above)
        pytest.skip(f"{package} does not import here ({type(exc).__name__})")
    model = build_model({"source": package, "name": "resnet18"}, 7, (3, 32, 32))
    assert model_logits(model, torch.randn(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers (kdlab[hf]) not installed")
def test_huggingface_from_config_and_from_a_saved_directory(tmp_path):
    section = {"source": "huggingface", "config": TINY_VIT, "architecture": "ViTForImageClassification"}
    check_model(section)
    torch.manual_seed(0)
    model = build_model(section, 3, (1, 8, 8))
    x = torch.randn(2, 1, 8, 8)
    assert model_logits(model, x).shape == (2, 3)
    model.save_pretrained(tmp_path / "vit")
    loaded = build_model({"source": "huggingface", "path": str(tmp_path / "vit")}, 3, (1, 8, 8))
    model.eval(), loaded.eval()
    assert torch.equal(model_logits(loaded, x), model_logits(model, x))
    # a kdlab weights file of it rebuilds from the config in its spec
    again = load_model_weights(save_model_weights(tmp_path / "w.safetensors", model)).eval()
    assert torch.equal(model_logits(again, x), model_logits(model, x))
    with pytest.raises(ConfigError, match="predicts 3 classes but the dataset has 5"):
        build_model({"source": "huggingface", "path": str(tmp_path / "vit")}, 5, (1, 8, 8))
    with pytest.raises(ConfigError, match="not a Hugging Face checkpoint directory"):
        check_model({"source": "huggingface", "path": str(tmp_path)})
    with pytest.raises(ConfigError, match="architecture='ViTForNothing' is not a transformers class"):
        check_model({**section, "architecture": "ViTForNothing"})


class Evil:
    """A pickle payload that creates a marker directory if anything ever unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (str(self.marker),))


def test_state_dict_files_are_read_and_unsafe_pickles_refused(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2))
    state = model.state_dict()
    torch.save(state, tmp_path / "plain.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "wrapped.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "plain.safetensors")  # no kdlab metadata
    for name in ("plain.pth", "wrapped.pt", "plain.safetensors"):
        got = read_state_dict(tmp_path / name)
        assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    marker = tmp_path / "PAYLOAD-RAN"
    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"w": Evil(marker)}))
    buffer = io.BytesIO()
    torch.save({"w": Evil(marker)}, buffer)  # the zip format, with the payload inside
    (tmp_path / "evil_zip.pt").write_bytes(buffer.getvalue())
    for name in ("evil.pth", "evil_zip.pt"):
        with pytest.raises(ConfigError, match=r"refused: it is a pickle that torch.load\(weights_only=True\)"):
            read_state_dict(tmp_path / name)
    assert not marker.exists()
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ConfigError, match="not a state dict"):
        read_state_dict(tmp_path / "list.pt")
    (tmp_path / "w.ckpt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a weights file kdlab reads"):
        read_state_dict(tmp_path / "w.ckpt")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ConfigError, match="model.safetensors or pytorch_model.bin"):
        read_state_dict(tmp_path / "empty_dir")
