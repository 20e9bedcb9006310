"""`kdlab advise` end to end on digits (tiny), and the YAML it writes run with `kdlab distill`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kdlab.advise.config import load_advise_config
from kdlab.cli import main
from kdlab.config import load_config
from kdlab.errors import ConfigError

BUDGET_MINUTES = 1.5


def _config(tmp_path: Path, teacher_run: Path) -> Path:
    cfg = {
        "data": {"name": "digits", "val_size": 300},
        "teachers": {
            "given": {"run": str(teacher_run)},
            "trained": {"train": {"model": {"name": "mlp", "width": 64, "depth": 1}, "epochs": 6}},
        },
        "student": {"model": {"name": "mlp", "width": 32, "depth": 1}, "epochs": 8, "train_subset": 400},
        "pilot": {"methods": ["kd", "dist"], "points": 2, "seeds": [0, 1, 2],
                  "rungs": [{"epochs": 0.5, "subset": 0.5, "seeds": 1, "keep": 2},
                            {"epochs": 1.0, "subset": 1.0, "seeds": 3}]},
        "profile": {"num_bootstrap": 50},
        "store": str(tmp_path / "store"),
        "threads": 1,
    }
    path = tmp_path / "advise.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def teacher_run(tmp_path: Path, tiny_run) -> Path:
    cfg = tmp_path / "teacher.yaml"
    cfg.write_text(yaml.safe_dump({**tiny_run, "model": {"name": "mlp", "width": 128, "depth": 1},
                                   "data": {"name": "digits", "val_size": 300}}))
    out = tmp_path / "teacher"
    assert main(["-q", "train", str(cfg), "--out", str(out)]) == 0
    return out


def test_advise_end_to_end_on_digits_then_distill_runs_its_yaml(tmp_path: Path, teacher_run: Path, capsys):
    out = tmp_path / "advice"
    assert main(["-q", "advise", str(_config(tmp_path, teacher_run)), "--budget", str(BUDGET_MINUTES),
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert results["elapsed_seconds"] <= 1.1 * BUDGET_MINUTES * 60
    # CE students at both rung sizes, 2 teachers x 2 methods x 2 points at rung 0, the 2 survivors at rung 1
    assert [len(h["candidates"]) for h in results["halving"]] == [8, 2]
    assert [len(h["survivors"]) for h in results["halving"]] == [2, 0]
    assert {t: p["role"] for t, p in results["profiles"]["teachers"].items()} == {"given": "teacher",
                                                                                  "trained": "teacher"}
    assert all(p["nasty"] in (False, None) for p in results["profiles"]["teachers"].values())
    rec = results["recommendation"]
    # the pick is the rung-1 candidate with the best mean validation accuracy
    last = results["halving"][-1]["val_accuracy"]
    best = max(last, key=lambda k: sum(last[k].values()) / len(last[k]))
    assert rec["pick"]["key"] == best
    assert rec["test_gain"]["n"] == 3 and rec["test_gain"]["low"] <= rec["test_gain"]["mean"] <= rec["test_gain"][
        "high"]
    assert len(results["per_class"]["gain"]["mean"]) == 10
    assert results["learning_curve"]["fit"]["verdict"] in ("under-capacity", "good fit", "over-capacity")
    report = (out / "report.md").read_text()
    assert rec["pick"]["key"] in report and "Expected gain over CE-only" in report

    # the recommended YAML is an ordinary run config: `kdlab distill` (or `kdlab train` for CE alone) runs it
    recommended = load_config(out / "recommended.yaml")
    assert recommended.train.epochs == 8 and recommended.data.train_subset == 400
    command = "distill" if rec["recommended"] == "distil" else "train"
    if command == "distill":
        assert recommended.loss.name == rec["pick"]["method"]
        assert recommended.loss.options == rec["pick"]["hyperparameters"]
        assert Path(recommended.teacher.run).is_absolute()
    capsys.readouterr()
    assert main(["-q", command, str(out / "recommended.yaml"), "--out", str(tmp_path / "final")]) == 0
    assert "test accuracy" in capsys.readouterr().out

    # a rerun reuses every pilot run from the store
    again = tmp_path / "again"
    assert main(["-q", "advise", str(_config(tmp_path, teacher_run)), "--budget", str(BUDGET_MINUTES),
                 "--out", str(again)]) == 0
    assert json.loads((again / "results.json").read_text())["runs_trained"] == 0


def test_bad_configs_are_refused_before_training(tmp_path: Path):
    base = {"data": {"name": "digits"}, "teachers": {"t": {"run": "x"}},
            "student": {"model": {"name": "mlp"}}}

    def load(**changes):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({**base, **changes}))
        return load_advise_config(path)

    assert load().pilot.methods == ["kd", "dkd", "dist", "logit_std", "ats"]
    with pytest.raises(ConfigError, match="'kdd' is not a registered loss"):
        load(pilot={"methods": ["kdd"]})
    with pytest.raises(ConfigError, match="cannot be piloted"):
        load(pilot={"methods": ["ce"]})
    with pytest.raises(ConfigError, match=r"rungs\[0\].keep is missing"):
        load(pilot={"rungs": [{"epochs": 0.5, "subset": 0.5}, {"epochs": 1, "subset": 1}]})
    with pytest.raises(ConfigError, match="not allowed on the last rung"):
        load(pilot={"rungs": [{"epochs": 1, "subset": 1, "keep": 2}]})
    with pytest.raises(ConfigError, match="trains less than"):
        load(pilot={"rungs": [{"epochs": 1, "subset": 1, "keep": 2}, {"epochs": 0.5, "subset": 1}]})
    with pytest.raises(ConfigError, match="label 'ce' is reserved"):
        load(teachers={"ce": {"run": "x"}})
    with pytest.raises(ConfigError, match="student.train_subset"):
        load(data={"name": "digits", "train_subset": 100})
    with pytest.raises(ConfigError, match="teachers"):
        load(teachers={"t": {"weights": "w.safetensors"}})


def test_a_missing_teacher_fails_before_anything_trains(tmp_path: Path, capsys):
    path = tmp_path / "advise.yaml"
    path.write_text(yaml.safe_dump({"data": {"name": "digits", "val_size": 300},
                                    "teachers": {"t": {"run": str(tmp_path / "nowhere")}},
                                    "student": {"model": {"name": "mlp", "width": 8}, "epochs": 1},
                                    "store": str(tmp_path / "store")}))
    assert main(["-q", "advise", str(path), "--budget", "1", "--out", str(tmp_path / "out")]) == 2
    assert "teacher.run=" in capsys.readouterr().err
    assert not (tmp_path / "store").exists() and not (tmp_path / "out").exists()


def test_a_budget_that_is_not_a_positive_number_is_refused(tmp_path: Path, capsys):
    path = tmp_path / "advise.yaml"
    path.write_text(yaml.safe_dump({"data": {"name": "digits"}, "teachers": {"t": {"run": "x"}},
                                    "student": {"model": {"name": "mlp"}}}))
    assert main(["-q", "advise", str(path), "--budget", "0", "--out", str(tmp_path / "out")]) == 2
    assert "--budget=0.0 is not allowed" in capsys.readouterr().err


def test_the_committed_example_config_is_valid():
    cfg = load_advise_config(Path(__file__).resolve().parents[2] / "configs" / "advise" / "fashion_mnist.yaml")
    assert set(cfg.teachers) == {"mlp_wide", "mlp_narrow"} and cfg.pilot.points == 12
    assert [r.keep for r in cfg.pilot.rungs] == [4, 2, None]
