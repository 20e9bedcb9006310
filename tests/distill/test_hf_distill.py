"""Hugging Face models (built from tiny configs, never downloaded) as teacher and student, through the Python API
and the CLI; a BERT-style model with an attention mask (named inputs) distils with a response loss from the
teacher-output cache and with a feature loss on its token features."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import yaml

from kdlab.cli import main
from kdlab.config import FeatureTermConfig, OptimConfig, ScheduleConfig, TrainConfig
from kdlab.data import ArrayDataset, TensorLoader
from kdlab.distill import Distiller, build_feature_terms, cached_teacher_logits
from kdlab.io import load_tensors
from kdlab.losses import build
from kdlab.models import build_model, load_model_weights, model_logits
from kdlab.train import evaluate, fit

pytestmark = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                reason="transformers (kdlab[hf]) not installed")

VIT = {"source": "huggingface", "architecture": "ViTForImageClassification",
       "config": {"model_type": "vit", "image_size": 8, "num_channels": 1, "patch_size": 4, "hidden_size": 16,
                  "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}}
TRAIN = {"epochs": 2, "batch_size": 6, "eval_batch_size": 32, "seed": 0, "progress": False}


def _bert(hidden: int) -> dict:
    return {"source": "huggingface", "architecture": "BertForSequenceClassification",
            "config": {"model_type": "bert", "vocab_size": 30, "hidden_size": hidden, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "intermediate_size": 2 * hidden, "max_position_embeddings": 16}}


def _token_data(n: int = 48) -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 30, (n, 10), generator=g)
    lengths = torch.randint(4, 11, (n,), generator=g)
    mask = (torch.arange(10)[None, :] < lengths[:, None]).long()
    ids = ids * mask  # padding id 0 after each sequence's end
    return ArrayDataset({"input_ids": ids, "attention_mask": mask}, ids[:, 0] % 3)


def _fit(objective, loader, run_dir, epochs=2):
    return fit(objective, loader, None, run_dir, train=TrainConfig(epochs=epochs, batch_size=8, progress=False),
               optim=OptimConfig(name="adam", lr=1e-2, weight_decay=0.0), schedule=ScheduleConfig(name="constant"))


def test_bert_with_an_attention_mask_distils_from_the_cache_and_through_token_features(tmp_path):
    data = _token_data()
    torch.manual_seed(0)
    teacher = build_model(_bert(16), 3, ()).eval()
    student = build_model(_bert(8), 3, ())
    # the cache runs the teacher on named inputs, keyed by the data's fingerprint (every named tensor hashed)
    cache = cached_teacher_logits(teacher, data.x, data.fingerprint(), cache_dir=tmp_path / "cache", batch_size=16)
    torch.testing.assert_close(cache, model_logits(teacher, data.x).detach(), rtol=1e-5, atol=1e-5)
    masked = {**data.x, "attention_mask": torch.ones_like(data.x["attention_mask"])}
    assert not torch.allclose(model_logits(teacher, masked), cache)  # the mask reached the model
    loader = TensorLoader(data, 8, shuffle=True, seed=0)
    result = _fit(Distiller(student, build("kd"), teacher_logits=cache), loader, tmp_path / "kd")
    assert {"train_kd", "train_ce"} <= set(result["history"][-1])
    # a feature term on the token features of the first encoder layer (16 vs 8 wide: a per-token linear adapter),
    # set up from a real batch of ids and masks
    terms = build_feature_terms([FeatureTermConfig(student_tap="bert.encoder.layer.0",
                                                   teacher_tap="bert.encoder.layer.0", loss={"name": "fitnet"})],
                                student, teacher, data.head(2))
    assert isinstance(terms[0].adapter, torch.nn.Linear) and terms[0].adapter.weight.shape == (16, 8)
    distiller = Distiller(student, build("kd"), teacher=teacher, terms=terms)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    result = _fit(distiller, loader, tmp_path / "fitnet", epochs=1)
    distiller.close()
    assert result["history"][0]["train_fitnet_bert.encoder.layer.0"] > 0
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_a_vit_is_a_teacher_and_a_student_through_the_api(tmp_path):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 1, 8, 8, generator=g) + y.view(-1, 1, 1, 1).float()  # class = brightness
    data = ArrayDataset(x, y)
    torch.manual_seed(0)
    vit_teacher = build_model(VIT, 3, (1, 8, 8))
    loader = TensorLoader(data, 10, shuffle=True, seed=0)
    _fit(Distiller(vit_teacher, build("ce")), loader, tmp_path / "teacher", epochs=3)
    assert evaluate(vit_teacher, TensorLoader(data, 30))["accuracy"] > 0.5
    cnn = build_model({"name": "cnn", "width": 0.25, "depth": 1}, 3, (1, 8, 8))
    result = _fit(Distiller(cnn, build("kd"), teacher=vit_teacher), loader, tmp_path / "cnn_student")
    assert result["history"][-1]["train_kd"] >= 0
    vit_student = build_model(VIT, 3, (1, 8, 8))
    result = _fit(Distiller(vit_student, build("kd"), teacher=cnn), loader, tmp_path / "vit_student")
    assert len(result["history"]) == 2


def _write(path, cfg):
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def test_a_vit_trains_as_teacher_and_as_student_through_the_cli(tmp_path, image_folder):
    data = {"name": "image_folder", "data_dir": str(image_folder), "val_size": 3, "options": {"channels": 1}}
    runs = tmp_path / "runs"
    # a ViT teacher (built from its config), then a kdlab CNN distilled from it (cached outputs of the ViT)
    assert main(["-q", "train", _write(tmp_path / "vit.yaml", {"data": data, "model": VIT, "train": TRAIN}),
                 "--out", str(runs / "vit")]) == 0
    spec = load_tensors(runs / "vit" / "checkpoints" / "best.safetensors")
    assert any(k.startswith("vit.") for k in spec)
    cnn = {"data": data, "model": {"name": "cnn", "width": 0.25, "depth": 1}, "train": TRAIN,
           "teacher": {"run": str(runs / "vit")}, "loss": {"name": "kd", "temperature": 2.0}}
    assert main(["-q", "distill", _write(tmp_path / "cnn.yaml", cnn), "--out", str(runs / "cnn")]) == 0
    # the CNN run as teacher of a ViT student
    vit_student = {"data": data, "model": VIT, "train": TRAIN, "teacher": {"run": str(runs / "cnn")},
                   "loss": {"name": "kd"}}
    assert main(["-q", "distill", _write(tmp_path / "vs.yaml", vit_student), "--out", str(runs / "vs")]) == 0
    # a Hugging Face checkpoint directory as the teacher, by path (its own weights) or as teacher.weights
    teacher = build_model(VIT, 3, (1, 8, 8))
    teacher.save_pretrained(tmp_path / "hf_teacher")
    by_path = {**cnn, "teacher": {"model": {"source": "huggingface", "path": str(tmp_path / "hf_teacher")}}}
    assert main(["-q", "distill", _write(tmp_path / "p.yaml", by_path), "--out", str(runs / "by_path")]) == 0
    as_weights = {**cnn, "teacher": {"model": VIT, "weights": str(tmp_path / "hf_teacher")}}
    assert main(["-q", "distill", _write(tmp_path / "w.yaml", as_weights), "--out", str(runs / "as_weights")]) == 0
    # the student's weights file alone rebuilds the ViT (its spec holds the Hugging Face config)
    rebuilt = load_model_weights(runs / "vs" / "checkpoints" / "best.safetensors")
    assert type(rebuilt).__name__ == "ViTForImageClassification"
    assert model_logits(rebuilt, torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_a_pth_state_dict_teacher_loads_through_the_cli(tmp_path, image_folder):
    data = {"name": "image_folder", "data_dir": str(image_folder), "val_size": 3, "options": {"channels": 1}}
    torch.manual_seed(0)
    teacher = build_model({"name": "cnn", "width": 0.5, "depth": 1}, 3, (1, 8, 8))
    torch.save(teacher.state_dict(), tmp_path / "teacher.pth")
    cfg = {"data": data, "model": {"name": "cnn", "width": 0.25, "depth": 1}, "train": TRAIN,
           "teacher": {"model": {"name": "cnn", "width": 0.5, "depth": 1}, "weights": str(tmp_path / "teacher.pth")},
           "loss": {"name": "kd"}}
    assert main(["-q", "distill", _write(tmp_path / "c.yaml", cfg), "--out", str(tmp_path / "run")]) == 0
