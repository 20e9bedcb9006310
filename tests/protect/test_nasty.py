"""The nasty objective against hand computations, the frozen adversary, and `protect_nasty` end to end on digits."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch
import yaml

from kdlab.config import parse_config
from kdlab.data import TensorLoader, load_dataset
from kdlab.distill import Distiller
from kdlab.errors import ConfigError
from kdlab.losses import build
from kdlab.models import create_model
from kdlab.protect import protect_nasty, resolve_model
from kdlab.recipe import run
from kdlab.models import load_model_weights
from kdlab.train import build_optimizer, evaluate


def test_nasty_loss_equals_hand_computation_with_the_nasty_distribution_first():
    # tau = 2: z / tau = [ln 3, 0] -> p = [3/4, 1/4]; the adversary's [0, 0] -> q = [1/2, 1/2]; y = 0
    # CE uses the raw logits [2 ln 3, 0] -> softmax = [9/10, 1/10] -> CE = -ln 0.9 = 0.1053605
    # KL(p || q) = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.1308121;  KL(q || p) would be 0.1438410
    # L = 0.1053605 - 0.5 * 4 * 0.1308121 = -0.1562637
    loss = build("nasty", temperature=2.0, omega=0.5)
    value, parts = loss.compute(torch.tensor([[2 * math.log(3), 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([0]))
    assert value.item() == pytest.approx(-0.1562637, abs=1e-6)
    assert parts["ce"].item() == pytest.approx(0.1053605, abs=1e-6)
    assert parts["kl"].item() == pytest.approx(4 * 0.1308121, abs=1e-6)
    # the reversed direction (adversary first) would give 0.1053605 - 2 * 0.1438410 = -0.1823215
    assert value.item() != pytest.approx(-0.1823215, abs=1e-3)


def test_nasty_loss_is_a_batch_mean_over_samples():
    # sample 1 as above; sample 2: logits [0, 0] against adversary [0, ln 9 * 2] at tau 2 -> p = [1/2, 1/2],
    # q = [1/10, 9/10]; CE(y=1) = ln 2; KL(p || q) = 1/2 ln 5 + 1/2 ln(5/9) = 0.5108256
    loss = build("nasty", temperature=2.0, omega=0.5)
    student = torch.tensor([[2 * math.log(3), 0.0], [0.0, 0.0]])
    adversary = torch.tensor([[0.0, 0.0], [0.0, 2 * math.log(9)]])
    value = loss(student, adversary, torch.tensor([0, 1]))
    ce = (0.1053605 + math.log(2)) / 2
    kl = (0.1308121 + 0.5 * math.log(5) + 0.5 * math.log(5 / 9)) / 2
    assert value.item() == pytest.approx(ce - 0.5 * 4 * kl, abs=1e-6)
    # omega = 0: plain cross-entropy
    assert build("nasty", omega=0.0)(student, adversary, torch.tensor([0, 1])).item() == pytest.approx(ce, abs=1e-6)


def test_nasty_gradient_pushes_the_tempered_output_away_from_the_adversary():
    z = torch.tensor([[1.0, 0.5, 0.0]], requires_grad=True)
    adversary = torch.tensor([[1.0, 0.4, 0.1]])
    loss = build("nasty", temperature=4.0, omega=10.0)  # the KL term dominates
    kl_before = None
    for _ in range(20):
        value, parts = loss.compute(z, adversary, torch.tensor([0]))
        kl_before = parts["kl"].item() if kl_before is None else kl_before
        z.grad = None
        value.backward()
        with torch.no_grad():
            z -= 0.5 * z.grad
    assert loss.compute(z, adversary, torch.tensor([0])).parts["kl"].item() > kl_before + 0.1


@pytest.mark.parametrize("key,value", [("omega", -0.1), ("temperature", 0.0), ("omega", True)])
def test_bad_nasty_hyperparameters_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"loss 'nasty': {key}="):
        build("nasty", **{key: value})


def test_adversary_stays_frozen_while_the_nasty_model_trains():
    torch.manual_seed(0)
    student = create_model("mlp", 3, (4,), width=8, depth=1)
    adversary = create_model("mlp", 3, (4,), width=8, depth=1)
    before = {k: v.clone() for k, v in adversary.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    distiller = Distiller(student, build("nasty", temperature=4.0, omega=0.5), teacher=adversary)
    optimizer = build_optimizer(distiller.parameters(), parse_config({"model": {"name": "mlp"}}).optim)
    assert all(p.data_ptr() not in {q.data_ptr() for q in adversary.parameters()} for p in distiller.parameters())
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    for _ in range(5):
        distiller.train()
        loss, _, _ = distiller(x, y, torch.arange(16))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not adversary.training
    assert all(not p.requires_grad and p.grad is None for p in adversary.parameters())
    assert all(torch.equal(before[k], v) for k, v in adversary.state_dict().items())
    assert not all(torch.equal(student_before[k], v) for k, v in student.state_dict().items())
    assert not any(k.startswith("teacher") for k in distiller.state_dict())


@pytest.fixture
def teacher_dir(tmp_path, tiny_run):
    cfg = parse_config({**tiny_run, "model": {"name": "mlp", "width": 64, "depth": 1}})
    run(cfg, tmp_path / "teacher")
    return tmp_path / "teacher"


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_protect_nasty_end_to_end_exports_the_last_epoch_and_leaves_the_adversary_alone(tmp_path, teacher_dir):
    teacher_weights = teacher_dir / "checkpoints" / "best.safetensors"
    digest = _sha(teacher_weights)
    config = {"teacher": str(teacher_dir), "epochs": 3, "batch_size": 64, "omega": 0.5, "optim": {"lr": 0.05}}
    result = protect_nasty(config, tmp_path / "nasty", overrides=["temperature=4"], progress=False)
    out = tmp_path / "nasty"

    assert _sha(teacher_weights) == digest  # the adversary (= the teacher) is untouched
    saved = json.loads((out / "protected.json").read_text())
    assert saved == result["protected"]
    assert saved["weights"] == str(out / "checkpoints" / "last.safetensors")
    run_cfg = parse_config(yaml.safe_load((out / "config.yaml").read_text()))
    assert run_cfg.loss.as_dict() == {"name": "nasty", "temperature": 4.0, "omega": 0.5}
    assert run_cfg.init == str(teacher_weights) and run_cfg.teacher.run == str(teacher_dir)
    assert run_cfg.model.as_dict() == {"name": "mlp", "width": 64, "depth": 1}
    assert run_cfg.data.name == "digits" and run_cfg.data.val_size == 200

    nasty = load_model_weights(out / "checkpoints" / "last.safetensors")
    teacher = load_model_weights(teacher_weights)
    assert any(not torch.equal(a, b) for a, b in zip(nasty.state_dict().values(), teacher.state_dict().values()))
    data = load_dataset("digits", val_size=200, seed=0)
    assert saved["test_accuracy"] == evaluate(nasty, TensorLoader(data.test, 512))["accuracy"]
    assert saved["teacher_test_accuracy"] == pytest.approx(json.loads(
        (teacher_dir / "summary.json").read_text())["test_accuracy"])
    assert saved["accuracy_drop"] == pytest.approx(saved["teacher_test_accuracy"] - saved["test_accuracy"])
    assert saved["kl_to_adversary_test"] > 0.05  # it did move away from the adversary
    # the run directory now resolves to the protected weights, and a rerun reuses the finished run
    assert resolve_model(out).weights == out / "checkpoints" / "last.safetensors"
    mtime = (out / "checkpoints" / "last.safetensors").stat().st_mtime_ns
    again = protect_nasty(config, out, overrides=["temperature=4"], progress=False)
    assert again["protected"] == result["protected"]
    assert (out / "checkpoints" / "last.safetensors").stat().st_mtime_ns == mtime


def test_protect_nasty_config_errors_name_the_key_before_training(tmp_path):
    # every key is validated before the teacher is even looked up
    teacher = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="unknown key 'omgea'.*Did you mean 'omega'"):
        protect_nasty({"teacher": teacher, "omgea": 1}, tmp_path / "a")
    with pytest.raises(ConfigError, match="missing key 'teacher'"):
        protect_nasty({}, tmp_path / "a")
    with pytest.raises(ConfigError, match="start='middle' is not allowed"):
        protect_nasty({"teacher": teacher, "start": "middle"}, tmp_path / "a")
    with pytest.raises(ConfigError, match="omega=-1 is not allowed"):
        protect_nasty({"teacher": teacher}, tmp_path / "a", overrides=["omega=-1"])
    with pytest.raises(ConfigError, match="teacher='.*nowhere' does not exist"):
        protect_nasty({"teacher": teacher}, tmp_path / "a")
    assert not (tmp_path / "a").exists()
