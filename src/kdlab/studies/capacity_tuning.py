"""Equal-budget tuning inside the capacity study: every method's space, its trials, the choice on validation.

A method run at its paper's settings (DKD's beta 8 and CIFAR-100 warm-up, DIST's ImageNet temperature) on a
30-epoch, 10-class student measures those settings, not the method. So before the comparison every method, vanilla
KD and the symmetric-ATS control included, gets the same number of trials over the space it declares beside its
defaults (``kdlab.losses.search_space``; the symmetric control over ATS's values with tau_gt = tau_other, so ATS and
its control differ in the asymmetry alone). Each trial is an ordinary run of the study's student (one per tuning
seed, through the run store and the executor); a method's configuration is the trial with the best mean validation
accuracy over the tuning seeds (:func:`kdlab.tuning.select_trial`; a trial's test accuracy is never read); the chosen
configuration is then trained on the evaluation seeds, which the selection never saw, and compared on test.

Budget (``tuning.teachers``): with ``largest`` (the default) remedies and controls are tuned on the largest teacher
(of the first teacher seed), where claims 4-6 compare them, and their choice is trained from every teacher; vanilla
KD is tuned on every teacher, because claim 3 compares each teacher's best KD. With ``all`` every method is tuned on
every teacher. TAKD's space adds ``assistant`` (which smaller family member, trained from the teacher with the
method's declared loss, teaches the student); from a teacher not larger than the chosen assistant the largest smaller
member teaches instead.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..config import Component, Section, Seed
from ..losses import search_space
from ..report.format import format_values
from ..space import Space
from ..tuning import TrialResult, select_trial

#: The space key of TAKD's assistant: the index of the smaller family member that teaches the student.
ASSISTANT = "assistant"


class TuningConfig(Section):
    """How the capacity study tunes every method before the comparison (module docstring)."""

    # trials per method and tuned teacher; 0 turns tuning off (every method at its declared configuration, TAKD
    # through the next smaller family member)
    trials: int = Field(4, ge=0)
    # what a trial is scored on: validation only (test is read for the chosen configurations alone)
    split: Literal["val"] = "val"
    # tuning seeds: every trial trains once per seed; distinct from the study's evaluation seeds
    seeds: list[Seed] = Field(default_factory=lambda: [100], min_length=1)
    # seeds the random sample of a space with more points than trials (the same points for every teacher)
    search_seed: Seed = 0
    # where remedies and controls are tuned (vanilla KD: always on every teacher)
    teachers: Literal["largest", "all"] = "largest"

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"tuning.seeds must be distinct, got {seeds}")
        return seeds


def method_space(method: Any, teacher: int) -> Space:
    """The space ``method`` is tuned over from teacher index ``teacher``, as run-config keys.

    Its loss's declared space (or the named control space, e.g. ATS's ``symmetric``) under ``loss.``; TAKD adds
    ``assistant`` in 0..teacher-1 (the smaller family members).
    """
    space = search_space(method.loss.name, method.control_space).prefixed("loss")
    if method.assistant:
        space = Space({ASSISTANT: tuple(range(teacher)), **space.values}, space.require)
    return space


def tuned_teachers(cfg: Any, method: Any) -> list[int]:
    """The teacher indices ``method`` is tuned on (none when tuning is off; never the smallest for TAKD)."""
    n = len(cfg.teachers.capacities)
    if cfg.tuning.trials == 0:
        return []
    teachers = list(range(n)) if method.role == "kd" or cfg.tuning.teachers == "all" else [n - 1]
    return [t for t in teachers if not (method.assistant and t == 0)]


def trial_points(cfg: Any, method: Any, teacher: int) -> list[dict[str, Any]]:
    """The points the budget buys in the method's space from this teacher (the whole grid when it fits, else a
    seeded sample)."""
    return method_space(method, teacher).points(cfg.tuning.trials, cfg.tuning.search_seed)


def check_budget(cfg: Any) -> None:
    """Every method can spend the budget at every teacher it is tuned on (else no equal budget): ValueError."""
    for m in cfg.methods:
        for t in tuned_teachers(cfg, m):
            size = method_space(m, t).size()
            if size < cfg.tuning.trials:
                raise ValueError(f"tuning.trials={cfg.tuning.trials} is not allowed for an equal budget: method "
                                 f"'{m.label}' has {size} points ({method_space(m, t).describe()}); use tuning.trials "
                                 f"<= {size}")


def method_loss(method: Any, values: dict[str, Any]) -> Component:
    """The method's declared loss with the ``loss.*`` values of a trial set."""
    options = {k.removeprefix("loss."): v for k, v in values.items() if k.startswith("loss.")}
    return Component(**{**method.loss.as_dict(), **options})


def select_configs(cfg: Any, runs: Any) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (method label, tuned teacher): its trials (validation accuracy per tuning seed) and the chosen one.

    Reads only the trials' validation accuracy (``Run.val_accuracy``, the best epoch's): the choice is
    argmax_t mean_s val(t, s) over the tuning seeds s, the earlier trial on a tie.
    """
    out = {}
    for m in cfg.methods:
        for t in tuned_teachers(cfg, m):
            trials = []
            for k, point in enumerate(trial_points(cfg, m, t)):
                found = runs.select(role="trial", method=m.label, teacher=t, trial=k)
                trials.append(TrialResult(k, point, {r.tags["seed"]: r.val_accuracy for r in found},
                                          {r.tags["seed"]: r.run_dir for r in found}))
            out[m.label, t] = {"trials": trials, "chosen": select_trial(trials)}
    return out


def final_values(cfg: Any, selections: dict[tuple[str, int], dict[str, Any]], method: Any,
                 teacher: int) -> tuple[dict[str, Any], int | None] | None:
    """(the values the method trains with from ``teacher``, the teacher index they were chosen on); None when the
    method has no student from this teacher (TAKD from the smallest)."""
    if method.assistant and teacher == 0:
        return None
    largest = len(cfg.teachers.capacities) - 1
    tuned_on = teacher if (method.label, teacher) in selections else largest
    if (method.label, tuned_on) not in selections:
        return ({ASSISTANT: teacher - 1} if method.assistant else {}), None
    chosen = selections[method.label, tuned_on]
    values = dict(chosen["trials"][chosen["chosen"]].values)
    if method.assistant:
        values[ASSISTANT] = min(values[ASSISTANT], teacher - 1)
    return values, tuned_on


def tuning_records(cfg: Any, selections: dict[tuple[str, int], dict[str, Any]], names: list[str],
                   table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """results.json's ``tuning.methods``: per tuned (method, teacher) the space, every trial, the choice, and the
    chosen configuration's evaluation-seed accuracy with its validation-to-test gap."""
    records = []
    for m in cfg.methods:
        for t in tuned_teachers(cfg, m):
            space = method_space(m, t)
            found = selections[m.label, t]
            trials, chosen = found["trials"], found["chosen"]
            cell = table[names[t]].get(m.label)
            selected = trials[chosen].mean_val
            records.append({
                "method": m.label, "role": m.role, "teacher": names[t], "space": space.to_dict(),
                "space_text": space.describe(), "space_size": space.size(), "budget": cfg.tuning.trials,
                "trials_run": len(trials), "sampler": "grid" if len(trials) == space.size() else "random",
                "trials": [{"trial": r.index, "values": r.values,
                            "val_accuracy": {str(s): v for s, v in r.val_accuracy.items()},
                            "mean_val_accuracy": r.mean_val} for r in trials],
                "chosen": {"trial": trials[chosen].index, "values": trials[chosen].values,
                           "mean_val_accuracy": selected},
                "final_val_accuracy": cell["val_accuracy"] if cell else None,
                "final_test_accuracy": cell["test_accuracy"] if cell else None,
                "val_to_test_gap": selected - cell["test_accuracy"]["mean"] if cell else None,
            })
    return records


def values_text(values: dict[str, Any]) -> str:
    """``temperature 2, alpha 0.5`` (keys without the ``loss.`` prefix; floats to 4 significant digits)."""
    return format_values(values, empty="declared defaults", sep=" ", drop_prefix="loss.")
