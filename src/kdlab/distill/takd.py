"""Teacher-assistant knowledge distillation: a chain teacher -> assistant(s) -> student, each step vanilla KD.

Mirzadeh, Farajtabar, Li, Levine, Matsukawa, Ghasemzadeh, "Improved Knowledge Distillation via Teacher Assistant",
AAAI 2020: when the teacher-student gap is large, distil into an intermediate-size assistant first and let it teach
the student. Every link is an ordinary distillation run, so a chain is a list of RunConfigs whose teacher is the
previous link's run directory; the run store makes each link reusable by other chains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..config import Component, RunConfig, TeacherConfig
from .run_store import RunStoreProtocol


def chain_configs(base: RunConfig, models: Sequence[Component], run_dir_of, teacher_run: str | Path | None = None
                  ) -> list[RunConfig]:
    """RunConfigs of the chain ``models[0] -> models[1] -> ... -> models[-1]``.

    ``base`` gives data, loss (the KD loss of every link), optimiser and schedule. Without ``teacher_run`` the first
    model is trained with CE as the chain's teacher; with it, ``models[0]`` is distilled from that run.
    ``run_dir_of(cfg)`` maps a config to its run directory (e.g. ``RunStore.path``), so later links can point at
    earlier ones before any of them has trained.
    """
    if len(models) < 2 and teacher_run is None:
        raise ValueError(f"a TAKD chain needs at least a teacher and a student, got {len(models)} model(s)")
    configs: list[RunConfig] = []
    previous = str(teacher_run) if teacher_run is not None else None
    for model in models:
        if previous is None:
            cfg = base.model_copy(update={"model": model, "teacher": None, "loss": Component(name="ce")})
        else:
            cfg = base.model_copy(update={"model": model, "teacher": TeacherConfig(run=previous)})
        cfg = RunConfig.model_validate(cfg.to_dict())  # re-validate the combined config
        configs.append(cfg)
        previous = str(run_dir_of(cfg))
    return configs


def run_chain(base: RunConfig, models: Sequence[Component], store: RunStoreProtocol, teacher_run: str | Path | None = None,
              progress: bool | None = None) -> list[dict[str, Any]]:
    """Train every link of the chain through ``store`` (e.g. a ``kdlab.store.RunStore``); each link's summary, in
    order."""
    return [store.run(cfg, progress=progress) for cfg in chain_configs(base, models, store.path, teacher_run)]
