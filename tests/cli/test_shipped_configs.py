"""Every YAML config shipped in configs/ validates (keys, types, registry names, loss hyperparameters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlab.config import load_config
from kdlab.validate import check_components

ROOT = Path(__file__).resolve().parents[2] / "configs"
# every run config; configs/spaces/ holds search spaces for `kdlab tune`, not run configs
CONFIGS = sorted(p for p in ROOT.rglob("*.yaml") if "spaces" not in p.relative_to(ROOT).parts)


def test_there_are_shipped_configs():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_config_is_valid(path):
    cfg = load_config(path)
    check_components(cfg)
