"""A finished run trained with an older revision of its loss's arithmetic is refused, never silently reused."""

from __future__ import annotations

import json

import pytest

from kdlab.config import parse_config
from kdlab.errors import ConfigError
from kdlab.losses import LOSSES
from kdlab.recipe import SUMMARY, loss_revision, run


def test_revisions_of_the_changed_losses_and_of_the_unchanged_ones():
    assert LOSSES.get("kd").revision_for({"temperature": 4.0}) == 1
    assert LOSSES.get("kd").revision_for({"standardize": True}) == 2
    assert LOSSES.get("ats").revision_for({"standardize": True}) == 2
    assert LOSSES.get("ce").revision_for({}) == 1
    for name in ("dkd", "ctkd", "logit_std", "isats"):
        assert LOSSES.get(name).revision_for({}) == 2, name


def test_a_finished_run_of_an_older_revision_is_refused_and_the_current_one_reused(tmp_path, tiny_run):
    cfg = parse_config({**tiny_run, "train": {**tiny_run["train"], "epochs": 1}})
    first = run(cfg, tmp_path / "ce")
    assert first["loss_revision"] == loss_revision(cfg) == 1
    assert run(cfg, tmp_path / "ce") == first  # same revision: reused as it is
    summary = json.loads((tmp_path / "ce" / SUMMARY).read_text())
    summary["loss_revision"] = 7  # as if trained by a kdlab whose CE computed something else
    (tmp_path / "ce" / SUMMARY).write_text(json.dumps(summary))
    with pytest.raises(ConfigError, match="revision 7 .* revision 1 .* not reused"):
        run(cfg, tmp_path / "ce")
    del summary["loss_revision"]  # written before revisions existed: revision 1, which CE still is
    (tmp_path / "ce" / SUMMARY).write_text(json.dumps(summary))
    assert run(cfg, tmp_path / "ce")["test_accuracy"] == first["test_accuracy"]
