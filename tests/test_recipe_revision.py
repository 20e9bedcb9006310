"""A finished run trained with an older revision of its loss's arithmetic is refused, never silently reused: a
RunConfig run (the recipe) and a run-store job that trains a response loss (kdlab.store.Job.trained_loss)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from kdlab.compress.finetune import finetune
from kdlab.config import Component, RunConfig, TrainConfig, parse_config
from kdlab.data import ArrayDataset
from kdlab.errors import ConfigError
from kdlab.losses import LOSSES
from kdlab.losses import build as build_loss
from kdlab.models import create_model
from kdlab.recipe import SUMMARY, loss_revision, run
from kdlab.store import Job, RunStore


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


class TinyDistillJob(Job):
    """A store job that trains a response loss through finetune (as the compression, k-fold, theory and multi-view
    jobs do), on 32 random points against fixed teacher logits."""

    kind: ClassVar[str] = "test_tiny_distill"
    loss: Component

    def trained_loss(self) -> Component:
        return self.loss

    def train(self, out_dir: Path, *, progress: bool | None = None,
              teacher_cache_dir: str | Path | None = None) -> dict[str, Any]:
        g = torch.Generator().manual_seed(0)
        x, teacher_logits = torch.randn(32, 4, generator=g), torch.randn(32, 3, generator=g)
        torch.manual_seed(0)
        model = create_model("mlp", 3, [4], width=8, depth=1)
        run_cfg = RunConfig(model=Component(name="mlp"), loss=self.loss,
                            train=TrainConfig(epochs=1, batch_size=16, progress=False))
        return finetune(model, ArrayDataset(x, torch.arange(32) % 3), None, run_cfg, out_dir,
                        loss=build_loss(self.loss.name, **self.loss.options), teacher_logits=teacher_logits,
                        keep="last", progress=False)


@pytest.mark.parametrize("options, revision", [({}, 1), ({"standardize": True}, 2)])
def test_a_store_job_records_its_loss_revision_and_refuses_a_run_of_another(tmp_path, options, revision):
    store = RunStore(tmp_path)
    job = TinyDistillJob(loss=Component(name="kd", **options))
    first = store.run(job)
    assert first["loss_revision"] == loss_revision(job.loss) == revision
    assert store.run(job) == first and (store.trained, store.reused) == (1, 1)  # same revision: reused as it is
    path = store.path(job) / SUMMARY
    summary = json.loads(path.read_text())
    summary["loss_revision"] = revision + 5  # as if trained by a kdlab whose kd computed something else
    path.write_text(json.dumps(summary))
    with pytest.raises(ConfigError, match=f"revision {revision + 5} .* revision {revision} .* not reused"):
        store.run(job)
