"""Every YAML config shipped in configs/ validates (keys, types, registry names, loss hyperparameters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlab.advise.config import load_advise_config
from kdlab.config import load_config
from kdlab.validate import check_components

ROOT = Path(__file__).resolve().parents[2] / "configs"
# every run config; configs/spaces/ holds search spaces for `kdlab tune` and configs/advise/ `kdlab advise` configs,
# not run configs
CONFIGS = sorted(p for p in ROOT.rglob("*.yaml") if not {"spaces", "advise"} & set(p.relative_to(ROOT).parts))
ADVISE_CONFIGS = sorted((ROOT / "advise").glob("*.yaml"))


def test_there_are_shipped_configs():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_config_is_valid(path):
    cfg = load_config(path)
    check_components(cfg)


@pytest.mark.parametrize("path", ADVISE_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_advise_config_is_valid(path):
    cfg = load_advise_config(path)
    assert cfg.teachers and cfg.pilot.methods
