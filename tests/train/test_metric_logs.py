"""train.log: metrics.csv beside metrics.jsonl, TensorBoard event files with loss parts, LR, accuracies and epoch
time per epoch; a missing tensorboard package is a config error naming the extra."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys

import pytest

from kdlab.config import parse_config
from kdlab.errors import ConfigError
from kdlab.recipe import run
from kdlab.train.metric_logs import tensorboard_tag
from kdlab.validate import check_components

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


class Interrupt(Exception):
    pass


def _stop_after(epoch):
    def callback(record, objective):
        if record["epoch"] == epoch:
            raise Interrupt

    return callback


def test_csv_holds_the_jsonl_records(tmp_path, tiny_run):
    cfg = parse_config({**tiny_run, "train": {**tiny_run["train"], "epochs": 2, "log": ["jsonl", "csv"]}})
    run(cfg, tmp_path / "r")
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    with open(tmp_path / "r" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(records) == 2
    for row, record in zip(rows, records):
        assert set(row) == set(record)
        for key, value in record.items():
            assert float(row[key]) == pytest.approx(value, rel=1e-12), key


def test_tags_group_train_and_validation_metrics():
    assert [tensorboard_tag(k) for k in ("train_loss", "train_kd", "val_accuracy", "lr", "epoch_seconds")] == \
        ["train/loss", "train/kd", "val/accuracy", "lr", "epoch_seconds"]


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard (kdlab[tensorboard]) not installed")
def test_tensorboard_events_hold_every_epoch_once_across_a_resume(tmp_path, tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = parse_config({**tiny_run, "train": {**tiny_run["train"], "epochs": 3, "log": ["tensorboard"]}})
    with pytest.raises(Interrupt):
        run(cfg, tmp_path / "r", on_epoch_end=_stop_after(2))
    run(cfg, tmp_path / "r")
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/accuracy", "train/ce", "val/loss", "val/accuracy", "lr", "epoch_seconds"} <= tags
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    for tag, key in (("train/loss", "train_loss"), ("val/accuracy", "val_accuracy"), ("lr", "lr")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2, 3], tag
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in records], rel=1e-6), tag


def test_missing_tensorboard_names_the_extra(monkeypatch, tiny_run):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    cfg = parse_config({**tiny_run, "train": {**tiny_run["train"], "log": ["tensorboard"]}})
    with pytest.raises(ConfigError, match=r"train.log: \[tensorboard\] needs .*pip install 'kdlab\[tensorboard\]'"):
        check_components(cfg)


def test_log_sinks_are_checked_and_not_part_of_the_run_identity(tiny_run):
    with pytest.raises(ConfigError, match="train.log"):
        parse_config({**tiny_run, "train": {**tiny_run["train"], "log": ["wandb"]}})
    with pytest.raises(ConfigError, match="each sink at most once"):
        parse_config({**tiny_run, "train": {**tiny_run["train"], "log": ["csv", "csv"]}})
    plain = parse_config(tiny_run)
    logged = parse_config({**tiny_run, "train": {**tiny_run["train"], "log": ["jsonl", "csv", "tensorboard"]}})
    assert plain.digest() == logged.digest()
