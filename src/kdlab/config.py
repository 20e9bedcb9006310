"""Validated run configuration: one YAML file = one trial.

``load_config(path, overrides)`` reads YAML, applies ``--set a.b=c`` overrides, and validates every section with
pydantic before anything runs. Every failure is one :class:`ConfigError` naming the key, the value and what is allowed.
Registry-backed names (dataset, model, loss, scheme) and their options are checked by
:func:`kdlab.validate.check_components`, which needs the registries and so sits above this module.
"""

from __future__ import annotations

import hashlib
import json
import math
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from .errors import ConfigError
from .registry import did_you_mean


# a seed: any integer torch, numpy and python's random accept alike
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]


class Section(BaseModel):
    """A config section that rejects unknown keys, booleans where a number belongs (YAML's ``true`` would otherwise
    pass as 1) and infinite or NaN floats."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name) if info.field_name else None
        if field is not None and _bool_where_number(value, field.annotation):
            raise ValueError("true/false is not a number here; write a number")
        return value


def _bool_where_number(value: Any, annotation: Any) -> bool:
    """Whether ``value`` (or an item of a list/tuple value) is a bool where ``annotation`` wants an int or float."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _bool_where_number(value, get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if isinstance(value, bool):
            return bool not in args and Any not in args and any(_bool_where_number(value, a) for a in args)
        return any(_bool_where_number(value, a) for a in args)
    if isinstance(value, bool):
        return annotation in (int, float)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        args = get_args(annotation)
        if origin is tuple and args and Ellipsis not in args:
            return any(_bool_where_number(v, a) for v, a in zip(value, args))
        item = args[0] if args else Any
        return any(_bool_where_number(v, item) for v in value)
    return False


class Component(BaseModel):
    """A named registry component whose other keys are its options (``{name: kd, temperature: 4}``)."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.options}


# the keys of each external model source besides 'source' (anything else under 'python', 'timm' and 'torchvision' is
# a keyword argument of the factory, checked against its signature where it has one)
_SOURCE_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # source -> (required, optional) keys
    "python": (("target",), ()),
    "huggingface": ((), ("path", "config", "architecture")),
    "timm": (("name",), ()),
    "torchvision": (("name",), ()),
}
_KWARGS_SOURCES = ("python", "timm", "torchvision")


class ExternalModel(BaseModel):
    """A model from outside kdlab's registry (:mod:`kdlab.models.external`)::

        {source: python, target: "package.module:factory", ...factory keyword arguments}
        {source: huggingface, path: DIR}                                 a save_pretrained directory (no download)
        {source: huggingface, config: {model_type: vit, ...}, architecture: ViTForImageClassification}
        {source: timm, name: resnet18, ...timm.create_model keyword arguments}
        {source: torchvision, name: resnet18, ...get_model keyword arguments}

    The dataset decides the class count (``num_classes`` / ``num_labels``), so those keys cannot be given.
    """

    model_config = ConfigDict(extra="allow")
    source: Literal["python", "huggingface", "timm", "torchvision"]

    @model_validator(mode="after")
    def _keys_of_the_source(self) -> "ExternalModel":
        required, optional = _SOURCE_KEYS[self.source]
        given = dict(self.model_extra or {})
        missing = [key for key in required if given.get(key) in (None, "")]
        if missing:
            raise ValueError(f"source '{self.source}' needs '{missing[0]}'"
                             + (" ('package.module:factory')" if missing[0] == "target" else ""))
        for key in required:
            if not isinstance(given[key], str):
                raise ValueError(f"'{key}' must be a string, got {given[key]!r}")
        if self.source not in _KWARGS_SOURCES:
            unknown = sorted(set(given) - set(required) - set(optional))
            if unknown:
                raise ValueError(f"unknown key '{unknown[0]}' for source '{self.source}'.{did_you_mean(unknown[0], optional)}"
                                 f" Allowed keys: source, {', '.join(required + optional)}")
        if self.source == "huggingface":
            if (given.get("path") is None) == (given.get("config") is None):
                raise ValueError("source 'huggingface' needs exactly one of 'path' (a save_pretrained directory) and "
                                 "'config' (a config dict for from_config, with model_type)")
            if given.get("config") is not None:
                if not isinstance(given["config"], dict) or "model_type" not in given["config"]:
                    raise ValueError("'config' must be a mapping with 'model_type' (e.g. vit, bert)")
                if given.get("architecture") is None:
                    raise ValueError("'config' needs 'architecture', the transformers class to build "
                                     "(e.g. ViTForImageClassification, AutoModelForSequenceClassification)")
                if "num_labels" in given["config"]:
                    raise ValueError("config.num_labels cannot be set: the dataset (data.name) decides it")
        return self

    @property
    def name(self) -> str:
        """A label for logs and summaries: the target, the model name or the checkpoint directory."""
        extra = self.model_extra or {}
        return str(extra.get("target") or extra.get("name") or extra.get("path") or extra.get("architecture"))

    @property
    def options(self) -> dict[str, Any]:
        """The keyword arguments for the factory (python, timm, torchvision); none for huggingface."""
        extra = dict(self.model_extra or {})
        if self.source not in _KWARGS_SOURCES:
            return {}
        return {k: v for k, v in extra.items() if k not in ("target", "name")}

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, **(self.model_extra or {})}


def _model_kind(value: Any) -> str:
    if isinstance(value, ExternalModel) or (isinstance(value, dict) and "source" in value):
        return "external"
    return "registered"


# a model section: kdlab's registry ({name: resnet20, width: 2}) or an external source ({source: ..., ...})
ModelSection = Annotated[Union[Annotated[Component, Tag("registered")], Annotated[ExternalModel, Tag("external")]],
                         Discriminator(_model_kind)]


class DataConfig(Section):
    name: str = "fashion_mnist"
    data_dir: str | None = None
    val_size: Union[int, float] = Field(5000, ge=0)
    train_subset: int | None = Field(None, ge=1)
    seed: Seed = 0
    crop_padding: int = Field(0, ge=0, le=16)
    hflip: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    # read samples from disk batch by batch instead of holding the dataset in memory (image_folder): for data larger
    # than memory; the teacher-output cache is then a memory-mapped file
    streaming: bool = False
    # worker processes decoding a streaming dataset (0: in the training process); never part of a run's identity
    num_workers: int = Field(0, ge=0, le=64)

    @field_validator("options")
    @classmethod
    def _no_shadowed_keys(cls, options: dict[str, Any]) -> dict[str, Any]:
        shadowed = sorted(set(options) & {"name", "data_dir", "val_size", "seed", "train_subset"})
        if shadowed:
            raise ValueError(f"{', '.join(shadowed)} cannot be a dataset option: "
                             f"{'each has' if len(shadowed) > 1 else 'it has'} its own key under 'data' "
                             f"(write data.{shadowed[0]}: ... instead of data.options.{shadowed[0]})")
        return options


class TeacherConfig(Section):
    """Where the teacher comes from: a kdlab run directory; or a model (kdlab's or an external source) plus its
    weights (a .safetensors file, a torch.save'd state dict .pt/.pth/.bin read with weights_only=True, or a Hugging
    Face checkpoint directory); or a Hugging Face model with ``path`` alone (its own weights)."""

    run: str | None = None
    model: ModelSection | None = None
    weights: str | None = None
    cache: bool = True
    # keep only each sample's k largest teacher logits in the output cache (the others share one value; error bound
    # in kdlab.distill.cache.TopKLogits): for many classes, where a full cache would not fit
    cache_topk: int | None = Field(None, ge=1)
    # early-stopped teacher (ESKD): the teacher as it was after this epoch of its run (its train.keep_epochs)
    epoch: int | None = Field(None, ge=1)
    # after this many student epochs the teacher is dropped and the objective becomes plain CE (ESKD's kd_stop_epoch);
    # stop_fraction says the same as a fraction of the student's train.epochs (scaled to the run: see kd_stop_epoch)
    stop_epoch: int | None = Field(None, ge=0)
    stop_fraction: float | None = Field(None, ge=0, le=1)
    # torch.compile the teacher for inference (building the output cache, or its live forward pass). Off by default:
    # it needs a C++ compiler at run time and recompiles per input shape; it paid off on the first pass for a conv
    # teacher here (2.4x) and never for an MLP teacher's single cache build (README, Performance)
    compile: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> "TeacherConfig":
        own_weights = isinstance(self.model, ExternalModel) and self.model.source == "huggingface" and \
            (self.model.model_extra or {}).get("path") is not None
        if self.run is None and (self.model is None or (self.weights is None and not own_weights)):
            raise ValueError("give either 'run' (a kdlab run directory) or both 'model' and 'weights' (a Hugging "
                             "Face model with 'path' brings its own weights)")
        if self.run is not None and (self.model is not None or self.weights is not None):
            raise ValueError("give either 'run' or 'model' + 'weights', not both")
        if self.epoch is not None and self.run is None:
            raise ValueError("'epoch' needs 'run' (a kdlab run that kept that epoch's checkpoint)")
        if self.stop_epoch is not None and self.stop_fraction is not None:
            raise ValueError(f"give stop_epoch or stop_fraction, not both (got stop_epoch={self.stop_epoch}, "
                             f"stop_fraction={self.stop_fraction})")
        return self

    def kd_stop_epoch(self, epochs: int) -> int | None:
        """The 0-based student epoch from which the teacher is dropped (plain CE after it), or None (never).

        ``stop_epoch`` as given, or ``floor(stop_fraction * epochs + 1/2)`` (the nearest epoch, halves up): early-
        stopped KD (Cho, Hariharan, "On the Efficacy of Knowledge Distillation", ICCV 2019) observes that KD helps
        the student early in training and hurts in its last stage, so where to stop is a point of the student's
        schedule: stop_fraction 0.5 is epoch 15 of a 30-epoch run and 120 of a 240-epoch run.
        """
        if self.stop_fraction is None:
            return self.stop_epoch
        return math.floor(self.stop_fraction * epochs + 0.5)


# an Adam beta: the decay rate of a moving average, in [0, 1)
Beta = Annotated[float, Field(ge=0, lt=1)]


class OptimConfig(Section):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    betas: tuple[Beta, Beta] = (0.9, 0.999)


class ScheduleConfig(Section):
    name: Literal["constant", "step", "cosine"] = "cosine"
    warmup_epochs: float = Field(0, ge=0)
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0, le=1)
    min_lr: float = Field(0.0, ge=0)


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    seed: Seed = 0
    deterministic: bool = False
    num_threads: int | None = Field(None, ge=1)
    progress: bool | None = None
    keep_epochs: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    # write the resumable checkpoint (and best/last weights, metrics) every k epochs and after the last one;
    # a resumed run still equals an uninterrupted one, it just repeats up to k-1 epochs after a crash
    checkpoint_every: int = Field(1, ge=1)
    # where to train: auto (cuda:LOCAL_RANK when CUDA is available, else cpu), cpu, cuda, cuda:N or mps
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    # mixed precision for the forward pass and loss: bf16 autocast (CPU and GPU), or fp16 autocast with a dynamic
    # gradient scaler (meant for GPUs; it runs on the CPU too, slowly). Off by default: it changes the numerics, and
    # bf16 saved only 6% of a CNN student's epoch on this project's CPU
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # NHWC memory layout for conv nets (student, objective modules, teacher). null (the default): on for models with
    # 2-D convolutions, where it made a CNN student's KD epoch 27% faster on this project's CPU (README, Performance)
    channels_last: bool | None = None
    # where per-epoch metrics go: metrics.jsonl always (resume reads it); csv adds metrics.csv, tensorboard event
    # files in <run>/tensorboard (needs the tensorboard extra). Never part of a run's identity
    log: list[Literal["jsonl", "csv", "tensorboard"]] = Field(default_factory=lambda: ["jsonl"])

    @field_validator("log")
    @classmethod
    def _each_sink_once(cls, sinks: list[str]) -> list[str]:
        repeated = sorted({s for s in sinks if sinks.count(s) > 1})
        if repeated:
            raise ValueError(f"each sink at most once (repeated: {', '.join(repeated)})")
        return sinks

    @field_validator("keep_epochs")
    @classmethod
    def _kept_epochs_exist(cls, keep: list[int], info: ValidationInfo) -> list[int]:
        epochs = info.data.get("epochs")  # absent when epochs itself failed validation
        if epochs is not None and any(e > epochs for e in keep):
            raise ValueError(f"it names epochs after the last one; allowed: epochs 1..{epochs} (train.epochs)")
        return keep


class TermSchedule(Section):
    """When a feature term is on, and how its weight ramps up. Epochs are 1-based, as in ``metrics.jsonl``.

    w(e) = 0                                             for e < start_epoch or e > end_epoch
    w(e) = weight * min(1, (e - start_epoch + 1) / warmup_epochs)   otherwise (just ``weight`` when warmup_epochs = 0)
    """

    start_epoch: int = Field(1, ge=1)
    end_epoch: int | None = Field(None, ge=1)
    warmup_epochs: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "TermSchedule":
        if self.end_epoch is not None and self.end_epoch < self.start_epoch:
            raise ValueError(f"end_epoch={self.end_epoch} must be >= start_epoch={self.start_epoch}")
        return self


class FeatureTermConfig(Section):
    """One feature or relation distillation term: ``weight * loss(adapter(student[s_tap]), teacher[t_tap])``.

    Taps are kdlab tap names (``stage2``, ``pre_logits``; see ``kdlab models taps MODEL``) or module paths
    (``layer3.1.conv2``). ``loss`` is a feature/relation loss with its hyperparameters (``{name: at, beta: 1000}``).
    An adapter is added when the loss needs equal shapes; ``adapter_batch_norm`` puts batch norm in conv adapters.
    ``name`` labels the term in the logs (default ``<loss>_<student_tap>``).
    """

    student_tap: str = Field(min_length=1)
    teacher_tap: str = Field(min_length=1)
    loss: Component
    weight: float = Field(1.0, ge=0)
    schedule: TermSchedule | None = None
    name: str | None = Field(None, min_length=1)
    adapter_batch_norm: bool = False


class RunConfig(Section):
    """A training (no teacher) or distillation (with teacher) run."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelSection
    # start the model from these weights (a .safetensors file or a kdlab run directory) instead of a random init
    init: str | None = None
    teacher: TeacherConfig | None = None
    loss: Component = Field(default_factory=lambda: Component(name="ce"))
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    # feature and relation distillation terms added to the response loss (they need a teacher section)
    features: list[FeatureTermConfig] = Field(default_factory=list)
    # FitNets stage 1: the first hint_epochs epochs train on the feature terms alone (no response loss)
    hint_epochs: int = Field(0, ge=0)
    # a training scheme other than offline distillation: {name: dml | joint | byot, ...options}
    scheme: Component | None = None

    @field_validator("model")
    @classmethod
    def _classes_come_from_the_data(cls, model: Any) -> Any:
        given = sorted(set(model.options) & {"num_classes", "in_shape", "in_chans"})
        if given:
            raise ValueError(f"{' and '.join(given)} cannot be set for the student: the dataset (data.name) decides "
                             f"them; remove model.{given[0]}")
        return model

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the config: the identity of a run.

        Fields added after runs already existed are left out while at their defaults, so adding them did not change
        the identity (and the run-store directory) of any earlier run.
        """
        payload = self.to_dict()
        for path, default in [*_DIGEST_OPTIONAL.items(), *((p, _ANY) for p in _EXECUTION_ONLY)]:
            *parents, key = path.split(".")
            node = payload
            for parent in parents:
                node = node.get(parent) or {}
            if key in node and (default is _ANY or node[key] == default):
                del node[key]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# dotted paths of fields left out of the digest while at these values (fields added after runs existed, and
# execution-only settings), so adding them changes no earlier run's identity
_DIGEST_OPTIONAL: dict[str, Any] = {"features": [], "hint_epochs": 0, "scheme": None, "train.checkpoint_every": 1,
                                     "train.precision": "fp32", "teacher.stop_fraction": None,
                                     "teacher.cache_topk": None, "data.streaming": False}
# never part of a run's identity: where and in which memory layout the same computation runs (results differ only
# by float rounding, as with another thread count)
_EXECUTION_ONLY = ("train.channels_last", "train.device", "teacher.compile", "train.log", "data.num_workers")
_ANY = object()


# ---------------------------------------------------------------------------------------------- loading


# bounds on a YAML document before it is built: anchors and aliases may share nodes, but the document they expand to
# (what deep copies, validation and json see) stays small; a 514-byte "billion laughs" expands to ~10^9 nodes
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 100


class YamlSyntaxError(ConfigError):
    """Text that does not parse as YAML at all (as opposed to YAML that kdlab refuses)."""


class _ConfigLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader, except that a repeated key in one mapping is an error (YAML forbids it; PyYAML would
    keep the last value silently). Keys brought in by a ``<<: *anchor`` merge may be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first given on line {first.line + 1}); give each key once",
                    key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str = "YAML") -> Any:
    """Parse YAML text safely: no duplicate keys, and aliases bounded before anything is built.

    The document's node graph is composed first (aliases are shared references, so this is cheap even for an alias
    bomb); its expanded size, every alias counted at full size, must stay within ``MAX_YAML_NODES`` nodes and
    ``MAX_YAML_DEPTH`` levels before it is turned into Python objects. ``source`` names the text in errors.
    """
    loader = _ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    except (yaml.scanner.ScannerError, yaml.parser.ParserError, yaml.reader.ReaderError) as exc:
        raise YamlSyntaxError(f"{source} is not valid YAML: {exc}") from None
    except yaml.YAMLError as exc:  # duplicate keys, python/* tags, undefined aliases
        raise ConfigError(f"{source} is not allowed YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source} is nested too deeply") from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Raise ConfigError if the document under ``root`` expands to too many nodes, too deep or into a cycle."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    in_progress: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in size:
            continue
        children = ([child for pair in node.value for child in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if not children_done:
            in_progress.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in in_progress:
                    raise ConfigError(f"{source} has an alias that contains itself (a recursive anchor); "
                                      "write the value out instead")
                if id(child) not in size:
                    stack.append((child, False))
            continue
        in_progress.discard(key)
        size[key] = 1 + sum(size[id(c)] for c in children)
        depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
        if size[key] > MAX_YAML_NODES:
            raise ConfigError(f"{source} expands to more than {MAX_YAML_NODES:,} values through its aliases "
                              "(*name references to &name anchors); refused before expanding it. Write the "
                              "values out, or use fewer nested aliases")
        if depth[key] > MAX_YAML_DEPTH:
            raise ConfigError(f"{source} is nested more than {MAX_YAML_DEPTH} levels deep; a config needs a few")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict; every way the file can be wrong is a ConfigError that names it."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config '{path}' is a directory, not a YAML file; give the path of a .yaml file")
    if not path.exists():
        raise ConfigError(f"config file '{path}' does not exist")
    if not path.is_file():
        raise ConfigError(f"config '{path}' is not a regular file (a device, pipe or socket); give a .yaml file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file '{path}' cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file '{path}' is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start}); save it as UTF-8") from None
    data = parse_yaml(text, f"config file '{path}'")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping at the top level, got {type(data).__name__}")
    return data


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides; values are parsed as YAML (``0.5`` -> float, ``[1,2]`` -> list)."""
    out = json.loads(json.dumps(raw))  # deep copy of plain data
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set '{item}' must look like key.subkey=value")
        try:
            value = parse_yaml(text, f"--set '{item}'")
        except YamlSyntaxError:
            value = text  # e.g. host:port forms; the schema then decides
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set '{item}': '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def _fields_at(model_cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The allowed keys of the section at ``loc`` (to suggest a spelling for an unknown key)."""
    cls: Any = model_cls
    for part in loc:
        if isinstance(part, int):
            continue  # a list index (features.0.loss): the list's item type was taken at the list's key
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return None
        ann = cls.model_fields[part].annotation
        args = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        cls = args[0] if args else ann
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return list(cls.model_fields)
    return None


def format_validation_error(exc: ValidationError, model_cls: type[BaseModel] | None) -> str:
    """One line per problem: the dotted key, the value and what is allowed (unknown keys with a did-you-mean)."""
    lines: list[str] = []
    for err in exc.errors():
        # a union's branches appear in the location as their type names (val_size.int, val_size.float): drop them
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_BRANCHES))
        key = ".".join(str(p) for p in loc) or "(top level)"
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            allowed = _fields_at(model_cls, loc[:-1]) or []
            lines.append(
                f"unknown key '{key}'.{did_you_mean(str(loc[-1]), allowed)} Allowed keys here: {', '.join(allowed)}"
            )
        elif err["type"] == "missing":
            lines.append(f"missing key '{key}'")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            line = f"{key}={value!r} is not allowed: {msg}"
            if line not in lines:
                lines.append(line)
    return "; ".join(lines)


_UNION_BRANCHES = {"int", "float", "str", "bool", "none", "list[int]", "list[float]", "list[str]", "dict[str,any]",
                   "registered", "external"}


def parse_config(raw: dict[str, Any], model_cls: type[BaseModel] = RunConfig) -> Any:
    try:
        return model_cls.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model_cls)) from None


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = (),
                model_cls: type[BaseModel] = RunConfig, base: dict[str, Any] | None = None) -> Any:
    """Read (optionally) a YAML file over ``base``, apply overrides and validate."""
    raw = dict(base or {})
    if path is not None:
        raw = deep_merge(raw, read_yaml(path))
    return parse_config(apply_overrides(raw, overrides), model_cls)


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def term_label(term: FeatureTermConfig) -> str:
    """A feature term's name in the logs: its ``name``, or ``<loss>_<student_tap>``."""
    return term.name or f"{term.loss.name}_{term.student_tap}"
