"""The compression study: budget sizing, compression to a budget, the fine-tuning run store, and the study end to end
on a tiny digits preset."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from kdlab.compress import magnitude_prune, nonzero_params
from kdlab.compress.budget import CompressionOptions, compress_to_budget, size_to_budget
from kdlab.compress.finetune import effective_macs, finetune
from kdlab.config import Component, parse_config
from kdlab.data import ArrayDataset
from kdlab.errors import ConfigError
from kdlab.models import count_macs, count_params, create_model, load_model_weights
from kdlab.studies import run_study
from kdlab.studies.compress import COMPRESS, CompressStudyConfig, budget_label, claims, pareto_front


def run_compress(**kwargs):
    return run_study(COMPRESS, **kwargs)

# digits teacher 64-128-128-10 (26,122 params); 1/2, 1/4, 1/8 = 13,061 / 6,530 / 3,265 parameters
TINY = ["data.name=digits", "data.val_size=300", "teacher.model.width=128", "teacher.epochs=6",
        "budgets=[0.5,0.25,0.125]", "students.epochs=2", "students.batch_size=64", "seeds=[0,1]"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models train faster on one thread, and several times faster when other processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_size_to_budget_is_the_largest_width_that_fits():
    # mlp depth 2 on 8x8 inputs, 10 classes: params(w) = 65 w + (w + 1) w + 10 (w + 1) = w^2 + 76 w + 10
    family = Component(name="mlp", depth=2)
    assert size_to_budget(family, "width", 408, 10, (1, 8, 8)) == (4, 330)  # w = 5 would need 415
    assert size_to_budget(family, "width", 415, 10, (1, 8, 8)) == (5, 415)
    assert size_to_budget(family, "width", 6530, 10, (1, 8, 8)) == (51, 6487)  # w = 52 would need 6,666
    with pytest.raises(ConfigError, match="width=1"):
        size_to_budget(family, "width", 80, 10, (1, 8, 8))


def test_budget_labels_and_pareto_front():
    assert [budget_label(f) for f in (0.25, 0.0625, 0.015625, 0.3)] == ["1/4", "1/16", "1/64", "3/10"]
    points = [(100, 0.90, "a"), (50, 0.85, "b"), (50, 0.80, "c"), (200, 0.89, "d"), (10, 0.5, "e")]
    # c is dominated by b (same size, less accurate), d by a (bigger, less accurate)
    assert pareto_front(points) == ["e", "b", "a"]


@pytest.mark.parametrize("method", ["magnitude", "structured", "lowrank"])
def test_compress_to_budget_lands_at_or_below_the_budget(method):
    torch.manual_seed(0)
    teacher = create_model("mlp", 10, (1, 8, 8), width=64, depth=2)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    target = count_params(teacher) // 8
    model, info = compress_to_budget(method, teacher, target, CompressionOptions())
    size = nonzero_params(model) if method == "magnitude" else count_params(model)
    assert size <= target
    # each method gets close to the budget (within the granularity of what it removes)
    assert size > 0.85 * target
    assert info["method"] == method
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # the teacher is untouched


def test_effective_macs_count_only_nonzero_weights():
    torch.manual_seed(0)
    model = create_model("mlp", 10, (1, 8, 8), width=32, depth=2)
    assert effective_macs(model, (1, 8, 8)) == count_macs(model, (1, 8, 8)) == 64 * 32 + 32 * 32 + 32 * 10
    magnitude_prune(model, 0.75, prune_head=True)
    weights = sum(int((m.weight != 0).sum()) for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert effective_macs(model, (1, 8, 8)) == weights
    assert count_macs(model, (1, 8, 8)) == 64 * 32 + 32 * 32 + 32 * 10  # dense kernels do not skip zeros


def test_finetune_keeps_masks(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(120, 1, 8, 8)
    y = torch.arange(120) % 10
    train, val = ArrayDataset(x[:80], y[:80]), ArrayDataset(x[80:], y[80:])
    cfg = parse_config({"data": {"name": "digits"}, "model": {"name": "mlp", "width": 16, "depth": 1},
                        "optim": {"lr": 0.1}, "train": {"epochs": 2, "batch_size": 16, "seed": 0}})
    model = create_model("mlp", 10, (1, 8, 8), width=16, depth=1)
    magnitude_prune(model, 0.5)
    masked = nonzero_params(model)
    first = finetune(copy.deepcopy(model), train, val, cfg, tmp_path, test=val, summary_extra={"note": 1})
    assert first["nonzero_params"] <= masked and first["note"] == 1
    assert first["params"] == count_params(model)
    # the saved file is a plain mlp with the zeros baked in
    baked = load_model_weights(first["weights"])
    assert nonzero_params(baked) == first["nonzero_params"]
    assert json.loads((tmp_path / "summary.json").read_text()) == first


def test_finetune_resumes_an_interrupted_masked_run_exactly(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(96, 1, 8, 8)
    y = torch.arange(96) % 10
    train, val = ArrayDataset(x[:64], y[:64]), ArrayDataset(x[64:], y[64:])
    cfg = parse_config({"data": {"name": "digits"}, "model": {"name": "mlp", "width": 16, "depth": 1},
                        "optim": {"lr": 0.1}, "train": {"epochs": 3, "batch_size": 16, "seed": 1}})
    model = create_model("mlp", 10, (1, 8, 8), width=16, depth=1)
    magnitude_prune(model, 0.6)

    class Stop(Exception):
        pass

    def interrupt(record):
        if record["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        finetune(copy.deepcopy(model), train, val, cfg, tmp_path / "a", on_epoch_end=interrupt)
    resumed = finetune(copy.deepcopy(model), train, val, cfg, tmp_path / "a")
    straight = finetune(copy.deepcopy(model), train, val, cfg, tmp_path / "b")
    assert resumed["final"] == straight["final"] and resumed["best_val_accuracy"] == straight["best_val_accuracy"]
    a, b = load_model_weights(resumed["weights"]), load_model_weights(straight["weights"])
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert nonzero_params(a) <= nonzero_params(model)


def test_compress_study_end_to_end_and_rerun_reuses_everything(tmp_path):
    results = run_compress(out=tmp_path, overrides=TINY, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["study"] == "compress"
    teacher = saved["teacher"]
    assert teacher["params"] == 26122
    assert [b["target_params"] for b in saved["budgets"]] == [13061, 6530, 3265]
    assert [b["label"] for b in saved["budgets"]] == ["1/2", "1/4", "1/8"]
    methods = ["magnitude", "structured", "lowrank", "kd", "scratch"]
    assert len(saved["students"]) == 3 * len(methods) * 2
    for s in saved["students"]:
        assert {"teacher", "method", "hyperparams", "seed", "test_accuracy", "run_dir"} <= set(s)
        assert s["params"] <= s["target_params"]
        assert (s["teacher"] is None) == (s["method"] == "scratch")
        # the parameters as reported are those of the saved student
        if s["method"] in ("kd", "scratch"):
            weights = Path(s["run_dir"]) / "checkpoints" / "best.safetensors"
        else:
            weights = Path(s["run_dir"]) / "model.safetensors"
        model = load_model_weights(weights)
        assert s["params"] == (nonzero_params(model) if s["method"] == "magnitude" else count_params(model))
    by = {(s["method"], s["budget"]): s for s in saved["students"] if s["seed"] == 0}
    # kd, scratch and the structured-pruned teacher share an architecture here: the mlp sized to the budget
    assert by["kd", "1/8"]["params"] == by["scratch", "1/8"]["params"] == 3190  # width 30: 30^2 + 76*30 + 10
    assert by["structured", "1/8"]["hyperparams"]["compression"]["widths"] == [30, 30]
    assert by["magnitude", "1/8"]["stored_params"] == 26122 and by["magnitude", "1/8"]["params"] <= 3265
    assert by["lowrank", "1/8"]["params"] <= 3265 and "head" not in by["lowrank", "1/8"]["hyperparams"]["compression"][
        "ranks"]
    # fine-tuning recovers accuracy lost by pruning
    assert by["magnitude", "1/8"]["test_accuracy"] >= by["magnitude", "1/8"]["pre_finetune_test_accuracy"]
    assert set(saved["table"]) == {"1/2", "1/4", "1/8"}
    assert all(name.split(" @ ")[0] in methods for name in saved["pareto"])
    assert len(saved["claims"]) == 8
    for claim in saved["claims"]:
        assert claim["n"] == 2 and claim["rule"].startswith("holds if the 95% interval lies above 0 points")
    kd_scratch = saved["differences"]["1/4"]["kd - scratch"]
    assert saved["claims"][0]["interval"] == [kd_scratch["low"], kd_scratch["high"]]
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    again = run_compress(out=tmp_path, overrides=TINY, progress=False)
    assert again["runs_trained"] == 0 and again["runs_reused"] == results["runs_trained"] == 1 + 30
    assert [s["test_accuracy"] for s in again["students"]] == [s["test_accuracy"] for s in results["students"]]


def test_compress_study_config_errors_before_training(tmp_path):
    # low-rank needs rank 1 in every hidden layer plus the dense head: 1,994 parameters, more than 1/64 (408)
    with pytest.raises(ConfigError, match=r"budgets\[1\]=0.015625.*'lowrank'"):
        run_compress(out=tmp_path, overrides=TINY + ["budgets=[0.25,0.015625]"], progress=False)
    with pytest.raises(ConfigError, match=r"claims\[0\].a='distill'"):
        run_compress(out=tmp_path, overrides=TINY + ["claims=[{a: distill, b: kd, budget: smallest}]"],
                     progress=False)
    with pytest.raises(ConfigError, match="methods"):
        run_compress(out=tmp_path, overrides=TINY + ["methods=[kd, prune]", "claims=[]"], progress=False)
    with pytest.raises(ConfigError, match="budgets"):
        run_compress(out=tmp_path, overrides=TINY + ["budgets=[1.5]"], progress=False)
    with pytest.raises(ConfigError, match="temperature"):
        run_compress(out=tmp_path, overrides=TINY + ["kd_loss={name: kd, temperature: -1}"], progress=False)
    assert not Path(tmp_path, "runs").exists()  # nothing trained


def test_compress_claims_on_hand_made_differences():
    cfg = CompressStudyConfig.model_validate({"teacher": {"model": {"name": "mlp"}}, "budgets": [0.5, 0.25, 0.125],
                                              "students": {"family": {"name": "mlp"}},
                                              "claims": [{"a": "kd", "b": "scratch", "budget": "middle"}]})
    [claim] = claims(cfg)
    assert claim.id == "kd_beats_scratch_middle" and "1/4" in claim.text

    def results(mean, low, high, n=3):
        row = {m: {"test_accuracy": {"mean": 0.8, "std": 0.01}} for m in ("kd", "scratch")}
        return {"differences": {"1/4": {"kd - scratch": {"mean": mean, "low": low, "high": high, "n": n}}},
                "table": {"1/4": row}}

    assert claim.evaluate(results(0.02, 0.01, 0.03))["holds"] is True
    assert claim.evaluate(results(-0.02, -0.03, -0.01))["holds"] is False
    assert claim.evaluate(results(0.01, -0.01, 0.03))["holds"] is None
    na = claim.evaluate(results(float("nan"), float("nan"), float("nan"), 0))
    assert na["holds"] is None and na["not_applicable"].startswith("no seed has both")
