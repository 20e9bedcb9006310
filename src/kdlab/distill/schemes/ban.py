"""Born-again networks: generations of the same architecture, each taught by the one before.

Furlanello, Lipton, Tschannen, Itti, Anandkumar, "Born Again Neural Networks", ICML 2018. Generation 0 learns from
the labels; generation k >= 1 is a fresh network of the same architecture distilled from generation k - 1:

    theta_0 = argmin L_sup(f(x; theta), y)
    theta_k = argmin L(f(x; theta), f(x; theta_{k-1}))        k = 1..G

The paper's L is the cross-entropy to the teacher's output distribution (no temperature, no label term), i.e. kdlab's
``kd`` with ``temperature=1, alpha=1`` -- the default here; any response loss can be given instead.

A chain of ordinary recipe runs through a run store (any :class:`~kdlab.distill.run_store.RunStoreProtocol`, e.g.
``kdlab.store.RunStore``, which the caller passes in: the store sits above distill): generation k's config names generation k - 1's run directory as ``teacher.run``, so
every generation is reused when finished and resumed when interrupted. Generation 0 is exactly the CE run of the
config, shared with any study that trains that baseline. Every generation keeps the config's seed: it starts from the
same initial weights and sees the same batches as generation 0, so only the targets differ (the paper draws a new
initialisation per generation; kdlab holds it fixed to pair generations with the CE baseline seed by seed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...config import Component, RunConfig
from ...errors import ConfigError
from ...losses import build as build_loss
from ..run_store import RunStoreProtocol

PAPER_LOSS = Component(name="kd", temperature=1.0, alpha=1.0)


def born_again_configs(cfg: RunConfig, generations: int, run_dir: Callable[[RunConfig], Path],
                       loss: Component | None = None) -> list[RunConfig]:
    """Configs of generations 0..``generations``: ``cfg`` trained with CE, then each taught by the previous.

    ``run_dir(cfg)`` is where a config's run lives (a store's ``path``); ``loss`` is the generations' distillation
    loss (default: the paper's, kd with T = 1 and alpha = 1).
    """
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
        raise ConfigError(f"generations={generations!r} is not allowed; must be an integer >= 1 (the number of "
                          "born-again generations after the CE generation 0)")
    if cfg.scheme is not None or cfg.features:
        raise ConfigError("born-again generations are plain response-distillation runs; give a config without "
                          "'scheme' and 'features'")
    distill = (loss or PAPER_LOSS).as_dict()
    try:  # a bad distillation loss fails here, not after generation 0 has trained
        build_loss(**distill)
    except ConfigError as exc:
        raise ConfigError(f"born-again loss: {exc}") from None
    base = {**cfg.to_dict(), "teacher": None}
    chain = [RunConfig.model_validate({**base, "loss": {"name": "ce"}})]
    for _ in range(generations):
        chain.append(RunConfig.model_validate({**base, "loss": distill, "teacher": {"run": str(run_dir(chain[-1]))}}))
    return chain


def born_again(cfg: RunConfig, generations: int, store: RunStoreProtocol, loss: Component | None = None,
               progress: bool | None = None) -> list[dict[str, Any]]:
    """Train (or reuse) generations 0..``generations`` in ``store``; their summaries, generation 0 first.

    Each run is checked by the store's recipe before it trains; the names and options the whole chain shares (data,
    model: generation 0's; the distillation loss: :func:`born_again_configs`) fail before anything trains.
    """
    chain = born_again_configs(cfg, generations, store.path, loss)
    return [store.run(run_cfg, progress=progress) for run_cfg in chain]
