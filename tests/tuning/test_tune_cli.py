"""`kdlab tune` end to end on digits: trials through the run store, the table, the report, a runnable best.yaml."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from kdlab.cli import main
from kdlab.config import parse_config
from kdlab.tuning import load_space


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def pair(tmp_path, tiny_run):
    """A trained digits teacher and a distill config for a small student."""
    small = {**tiny_run, "train": {**tiny_run["train"], "epochs": 2}}
    assert main(["-q", "train", str(_write(tmp_path / "t.yaml", small)), "--out", str(tmp_path / "teacher")]) == 0
    student = {**small, "model": {"name": "mlp", "width": 8, "depth": 1}, "teacher": {"run": str(tmp_path / "teacher")},
               "loss": {"name": "kd", "temperature": 4.0, "alpha": 0.9}}
    return _write(tmp_path / "student.yaml", student)


def test_tune_on_digits_writes_the_table_report_and_a_runnable_best_config(tmp_path, pair, capsys):
    space = _write(tmp_path / "space.yaml", {"values": {"loss.temperature": [1.0, 8.0], "loss.alpha": [0.1, 0.9]}})
    out = tmp_path / "tuned"
    args = ["-q", "tune", str(pair), "--space", str(space), "--trials", "3", "--out", str(out), "--seeds", "0,1",
            "--final-seeds", "2", "--search-seed", "4"]
    assert main(args) == 0
    assert "chosen {" in capsys.readouterr().out
    result = json.loads((out / "tuning.json").read_text())
    assert result["trials_run"] == 3 and result["space_size"] == 4 and result["sampler"] == "random"
    assert result["selected_on"] == "validation"
    means = [t["mean_val_accuracy"] for t in result["trials"]]
    for t in result["trials"]:  # the mean is over the two tuning seeds
        assert t["mean_val_accuracy"] == pytest.approx(sum(t["val_accuracy"].values()) / 2, rel=1e-12)
    chosen = result["chosen"]
    assert chosen["mean_val_accuracy"] == max(means) and chosen["trial"] == means.index(max(means))
    assert [f["seed"] for f in result["final"]] == [2]
    assert result["val_to_test_gap"] == pytest.approx(chosen["mean_val_accuracy"] - result["final"][0]["test_accuracy"])
    # every trial is an ordinary run of the store, one per tuning seed
    run_dirs = {d for t in result["trials"] for d in t["run_dirs"].values()}
    assert len(run_dirs) == 6 and all(Path(d).parent == out / "runs" and (Path(d) / "summary.json").is_file()
                                      for d in run_dirs)
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["chosen"] for r in rows].count("True") == 1 and set(rows[0]) >= {"loss.temperature", "val_seed1"}
    report = (out / "report.md").read_text()
    assert "a random sample of 3 of its 4 points (search seed 4)" in report and "**chosen**" in report
    assert "test accuracy is never read" in report.replace("trials' test accuracy", "test accuracy")

    # best.yaml is the base config with the chosen values, and `kdlab distill` runs it as it is
    best = parse_config(yaml.safe_load((out / "best.yaml").read_text()))
    chosen_options = {k.removeprefix("loss."): v for k, v in chosen["values"].items()}
    assert best.loss.options == chosen_options and best.train.seed == 3  # the user's own seed
    assert main(["-q", "distill", str(out / "best.yaml"), "--out", str(tmp_path / "best_run")]) == 0
    summary = json.loads((tmp_path / "best_run" / "summary.json").read_text())
    assert summary["loss"] == {"name": "kd", **chosen_options}

    # a rerun trains nothing new: every trial and final run is reused from the store
    stored = sorted(p.name for p in (out / "runs").iterdir())
    assert main(args) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == stored
    assert json.loads((out / "tuning.json").read_text())["chosen"] == chosen


def test_bad_space_exits_2_before_anything_trains(tmp_path, pair, capsys):
    space = _write(tmp_path / "space.yaml", {"values": {"loss.temprature": [1.0, 2.0]}})
    assert main(["-q", "tune", str(pair), "--space", str(space), "--trials", "2", "--out", str(tmp_path / "o")]) == 2
    assert "loss 'kd' has no option 'temprature'" in capsys.readouterr().err
    assert not (tmp_path / "o" / "runs").exists()
    assert main(["-q", "tune", str(pair), "--trials", "2", "--out", str(tmp_path / "o"), "--seeds", "0",
                 "--final-seeds", "0"]) == 2
    assert "also tuned" in capsys.readouterr().err


def test_default_space_is_the_losss_own(tmp_path, pair, tiny_run):
    base = parse_config(yaml.safe_load(pair.read_text()))
    space = load_space(None, base)
    assert space.keys == ["loss.temperature", "loss.alpha"] and space.size() == 12
    ce = parse_config(tiny_run)
    with pytest.raises(Exception, match="loss 'ce' declares no search space; give one with --space"):
        load_space(None, ce)


def test_shipped_space_files_parse_and_fit_the_shipped_student_config():
    from kdlab.config import load_config
    from kdlab.tuning import plan_trials

    root = Path(__file__).resolve().parents[2] / "configs"
    spaces = sorted((root / "spaces").glob("*.yaml"))
    assert spaces
    base = load_config(root / "student_kd.yaml")
    for path in spaces:
        space = load_space(path, base)
        plan = plan_trials(base, space, 12, seeds=[0])  # every trial's config validates
        assert len(plan.trials) == min(12, space.size())
