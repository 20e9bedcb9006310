"""From the pilot's runs to a recommendation: what to distil from, how, what it gains, and where it hurts.

Every choice reads validation accuracy only:

- the *pilot's pick* is the candidate with the best mean validation accuracy over the seeds of the last rung that ran
  (:meth:`kdlab.advise.halving.Halving.chosen`);
- the *recommendation* is that candidate when its mean validation accuracy beats the CE-only student's at the same
  rung (same images, epochs and seeds), else CE alone (distillation did not pay on this pair).

Test accuracy is then read for that one comparison: the *expected gain* is the pick's test accuracy minus the CE-only
student's, paired over the rung's seeds, with a t interval (:func:`kdlab.analysis.stats.paired_by_seed`); the rule
"distillation helps", gain > 0, is decided from that interval (true / false / null). Classes with *negative transfer*
are those whose per-class validation accuracy gain of the pick over CE has its whole interval below 0
(:func:`kdlab.analysis.undistillable.class_gain`, t interval over seeds from 3 seeds, else a paired bootstrap over
seeds and images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..analysis.fit import fit_verdict
from ..analysis.stats import mean_std, paired_by_seed
from ..analysis.undistillable import class_gain, undistillable_classes
from ..analysis.verdict import Rule, decide, verdict_word
from ..config import RunConfig
from ..layout import best_weights_path
from ..models import load_model_weights, predict_logits
from ..studies.common import StageConfig, stage_run_config
from ..studies.fit import read_curves
from .halving import Candidate
from .pilot import CE, PilotResult, PilotSetup

#: Declared before the pilot: distillation helps when the gain in test accuracy over CE-only is above 0.
GAIN_RULE = Rule(">", 0.0)


def val_predictions(run_dirs: Sequence[str], x: torch.Tensor) -> torch.Tensor:
    """Predicted classes [S, N] of each run's best-validation student on ``x``."""
    rows = []
    for run_dir in run_dirs:
        model = load_model_weights(best_weights_path(run_dir))
        model.eval()
        rows.append(predict_logits(model, x).argmax(dim=-1))
    return torch.stack(rows)


def per_class_transfer(pick_dirs: Sequence[str], ce_dirs: Sequence[str], val_x: torch.Tensor, val_y: torch.Tensor,
                       num_classes: int, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class validation-accuracy gain of the pick over CE (paired runs, same seeds) and the classes whose whole
    interval lies below 0 (module docstring)."""
    kd, ce = val_predictions(pick_dirs, val_x), val_predictions(ce_dirs, val_x)
    interval = "t" if len(pick_dirs) >= 3 else "bootstrap"
    gain = class_gain(kd, ce, val_y, num_classes, interval=interval)
    negative = undistillable_classes(gain)
    return {"gain": gain.as_dict(), "interval": interval, "class_names": list(class_names),
            "negative": [{"class": c, "name": class_names[c], "gain": gain.mean[c], "low": gain.low[c],
                          "high": gain.high[c]} for c in negative],
            "below_zero": [class_names[c] for c, g in enumerate(gain.mean) if g < 0]}


def learning_curve(result: PilotResult, setup: PilotSetup) -> dict[str, Any]:
    """The CE-only student's validation accuracy at each rung size (images, epochs), and the fit verdict of its
    per-epoch curves at the largest size that ran (:func:`kdlab.analysis.fit.fit_verdict`: under-capacity when it
    cannot fit its training data, over-capacity when the train-val gap is large or growing)."""
    points = []
    for rung in result.ce_rungs:
        shape = setup.shapes[rung]
        points.append({"rung": rung, "images": shape.images, "epochs": shape.epochs,
                       "val_accuracy": mean_std(list(result.ce_by_seed(rung).values()))})
    verdict = None
    if result.ce_rungs:
        last = result.ce_rungs[-1]
        runs = [s for (r, key, _), s in sorted(result.summaries.items(), key=lambda kv: kv[0][2])
                if r == last and key == CE]
        curves = read_curves(runs[0]["run_dir"])
        verdict = fit_verdict(curves["train_acc"], curves["val_acc"], curves["train_loss"], curves["val_loss"])
    return {"points": points, "fit": verdict}


def recommend(result: PilotResult, setup: PilotSetup) -> dict[str, Any]:
    """The pilot's pick, the recommendation (the pick or CE alone, on validation), its expected gain over CE with
    an interval and a verdict, and the pick's per-class transfer (module docstring). ``None`` fields when the pilot
    trained no candidate."""
    halving = result.halving
    pick = halving.chosen()
    if pick is None:
        return {"pick": None, "recommended": CE, "reason": result.stop_reason or "the pilot trained no candidate"}
    rung = halving.last.index
    pick_val, ce_val = result.by_seed(rung, pick), result.ce_by_seed(rung)
    distil = mean_std(list(pick_val.values()))["mean"] > mean_std(list(ce_val.values()))["mean"]
    gain = paired_by_seed(result.by_seed(rung, pick, "test_accuracy"), result.ce_by_seed(rung, "test_accuracy"))
    val_gain = paired_by_seed(pick_val, ce_val)
    holds = decide(GAIN_RULE, gain["low"], gain["high"]) if gain["n"] >= 2 else None
    return {
        "pick": {"teacher": pick.teacher, "method": pick.method, "hyperparameters": pick.hyperparameters,
                 "key": pick.key},
        "rung": rung,
        "images": setup.shapes[rung].images,
        "epochs": setup.shapes[rung].epochs,
        "seeds": list(setup.shapes[rung].seeds),
        "recommended": "distil" if distil else CE,
        "val": {"pick": mean_std(list(pick_val.values())), "ce": mean_std(list(ce_val.values())),
                "gain": val_gain},
        "test_gain": gain,
        "gain_rule": {"op": GAIN_RULE.op, "threshold": GAIN_RULE.threshold},
        "distillation_helps": holds,
        "verdict": verdict_word(holds, None if gain["n"] >= 2 else "one seed: no interval"),
    }


def pick_run_dirs(result: PilotResult, candidate: Candidate | None, rung: int) -> list[str]:
    """The run directories of ``candidate`` (None: the CE-only student) at ``rung``, in seed order."""
    key = candidate.key if candidate is not None else CE
    return [s["run_dir"] for (r, k, _), s in sorted(result.summaries.items(), key=lambda kv: kv[0][2])
            if r == rung and k == key]


def recommended_config(setup: PilotSetup, pick: Candidate | None, seed: int) -> RunConfig:
    """The full run the user should train: the student's own recipe (all its epochs and images) with the picked
    teacher (its path made absolute, so the file runs from any directory) and loss; CE alone for ``None``."""
    stage: StageConfig = setup.student
    cfg = stage_run_config(stage, setup.data, seed, loss=pick.loss() if pick is not None else None)
    if pick is None:
        return cfg
    teacher = setup.teachers[pick.teacher]
    update: dict[str, Any] = {}
    if teacher.run is not None:
        update["run"] = str(Path(teacher.run).resolve())
    if teacher.weights is not None:
        update["weights"] = str(Path(teacher.weights).resolve())
    return cfg.model_copy(update={"teacher": teacher.model_copy(update=update)})
