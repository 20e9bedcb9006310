"""A model given by path: a kdlab run directory or a weights file, resolved to its weights, spec and training data.

Used by ``kdlab protect nasty`` (the teacher and adversary it is given) and ``kdlab audit distillability`` (the
model it audits and its reference).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..config import Component, DataConfig, RunConfig, TeacherConfig, parse_config, read_yaml
from ..data import load_dataset
from ..errors import ConfigError
from ..io import read_safetensors_metadata
from ..models import load_model_weights
from ..recipe import CONFIG

PROTECTED = "protected.json"  # written by protect_nasty into its run dir: names the exported (protected) weights


# --------------------------------------------------------------------------------------------- the model


@dataclass
class ModelSource:
    """A model to audit or to use as teacher/adversary: its weights file, spec, and (when known) its run's config."""

    source: str
    weights: Path
    spec: dict[str, Any]
    run_config: RunConfig | None
    dataset: str | None
    run_dir: Path | None

    @property
    def label(self) -> str:
        """A short name for tables: the model name and its capacity options."""
        options = ",".join(f"{k}={v}" for k, v in self.spec.items() if k not in ("name", "num_classes", "in_shape"))
        return f"{self.spec.get('name', '?')}({options})"

    def teacher_config(self) -> TeacherConfig:
        """How a distillation run loads this model as its (frozen) teacher: ``run`` for a run's best weights, else
        ``model`` + ``weights`` (e.g. the protected last-epoch weights of a nasty run)."""
        if self.run_dir is not None and self.weights == self.run_dir / "checkpoints" / "best.safetensors":
            return TeacherConfig(run=str(self.run_dir))
        if "pruned_from" in self.spec or "lowrank_from" in self.spec:
            raise ConfigError(f"model '{self.source}': a compressed model's weights file cannot be used as a teacher "
                              f"directly; pass its run directory instead")
        options = {k: v for k, v in self.spec.items() if k not in ("num_classes", "in_shape")}
        return TeacherConfig(model=Component(**options), weights=str(self.weights))

    def model_component(self) -> Component:
        """The model spec as a RunConfig ``model`` section (without num_classes / in_shape)."""
        if self.run_config is not None:
            return self.run_config.model
        return Component(**{k: v for k, v in self.spec.items() if k not in ("num_classes", "in_shape")})

    def load(self) -> nn.Module:
        """The model with its weights, in eval mode."""
        model = load_model_weights(self.weights)
        model.eval()
        return model


def resolve_model(source: str | Path, key: str = "model") -> ModelSource:
    """A kdlab run directory or a ``.safetensors`` weights file with the model spec in its metadata.

    A run directory gives its best-validation weights, except a directory made by ``kdlab protect nasty``
    (holding ``protected.json``), which gives the protected (last-epoch) weights it names. A weights file inside a
    run's ``checkpoints/`` folder also picks up that run's config (for the data it was trained on).
    Raises ConfigError naming ``key`` and the value when neither exists or the file has no model spec.
    """
    path = Path(source)
    run_dir: Path | None = None
    if path.is_dir():
        run_dir = path
        protected = path / PROTECTED
        if protected.is_file():
            weights = Path(json.loads(protected.read_text())["weights"])
        else:
            weights = path / "checkpoints" / "best.safetensors"
        if not weights.is_file():
            raise ConfigError(f"{key}='{source}' is a directory without trained weights ({weights} is missing); "
                              f"allowed: a finished kdlab run directory or a .safetensors weights file")
    elif path.is_file():
        weights = path
        if path.parent.name == "checkpoints" and (path.parent.parent / CONFIG).is_file():
            run_dir = path.parent.parent
    else:
        raise ConfigError(f"{key}='{source}' does not exist; allowed: a finished kdlab run directory or a "
                          f".safetensors weights file written by kdlab")
    try:
        meta = read_safetensors_metadata(weights)
    except Exception as exc:  # noqa: BLE001  (any unreadable file is the user's input problem)
        raise ConfigError(f"{key}='{source}': '{weights}' is not a readable safetensors file ({exc})") from None
    if "model_spec" not in meta:
        raise ConfigError(f"{key}='{source}': '{weights}' has no kdlab model spec in its metadata; allowed: weights "
                          f"saved by kdlab (checkpoints/best.safetensors or last.safetensors of a run)")
    spec = json.loads(meta["model_spec"])
    run_config = _read_run_config(run_dir) if run_dir is not None else None
    return ModelSource(str(source), weights, spec, run_config, meta.get("dataset"), run_dir)


def _read_run_config(run_dir: Path) -> RunConfig | None:
    """The RunConfig of a run directory (the ``run`` part of a skeptical or nasty run), or None."""
    path = run_dir / CONFIG
    if not path.is_file():
        return None
    try:
        raw = read_yaml(path)  # bounded aliases, no duplicate keys: a run directory is input too
    except ConfigError:
        return None
    if isinstance(raw, dict) and "run" in raw and isinstance(raw["run"], dict):
        raw = raw["run"]  # a skeptical student or a nasty teacher: the RunConfig is its ``run`` part
    try:
        return RunConfig.model_validate(raw)
    except ValueError:
        return None


def model_data_config(source: ModelSource, overrides: dict[str, Any], key: str = "data") -> DataConfig:
    """The data the model was trained on (its run's data section, else its metadata's dataset), with ``overrides``.

    The model's ``train_subset`` and augmentation are dropped: they describe how the model was trained, not the
    data a copier distils on (each probe stage sets its own).
    """
    if source.run_config is not None:
        base = source.run_config.data.model_dump(mode="json")
    elif source.dataset is not None:
        base = {"name": source.dataset}
    else:
        base = {}
    base.update({"train_subset": None, "crop_padding": 0, "hflip": False})
    if "name" not in base and "name" not in overrides:
        raise ConfigError(f"{key}.name is missing: the model '{source.source}' does not say which dataset it was "
                          f"trained on; set it, e.g. --set {key}.name=fashion_mnist")
    try:
        return parse_config({**base, **overrides}, DataConfig)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def load_splits(data: DataConfig, train_subset: int | None = None) -> Any:
    """The dataset splits of ``data`` (with ``train_subset``), normalised as every run on it."""
    return load_dataset(data.name, data_dir=data.data_dir, val_size=data.val_size, seed=data.seed,
                        train_subset=train_subset, **data.options)
