"""Optional dependencies: each is imported lazily, on purpose, by the one feature that needs it, and a missing one is a
ConfigError (exit 2) naming the extra that installs it, raised while the config is checked, before anything runs.

    extra          packages                 what needs it
    hf             transformers             model.source: huggingface (and a Hugging Face checkpoint directory)
    datasets       datasets                 data.name: hf_dataset (a DatasetDict saved to disk)
    tensorboard    tensorboard              train.log: [tensorboard]
    timm           timm                     model.source: timm
    torchvision    torchvision              model.source: torchvision

timm and torchvision depend on a torchvision build matched to one torch version, so installing either may replace
the installed torch; kdlab's own venv (``make test``) therefore installs neither and their tests skip.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ConfigError

EXTRA_OF = {"transformers": "hf", "datasets": "datasets", "tensorboard": "tensorboard", "timm": "timm", "torchvision": "torchvision"}


def require(module: str, purpose: str, package: str | None = None) -> ModuleType:
    """Import ``module``, which needs the optional ``package`` (one of :data:`EXTRA_OF`; default: the module's top-level
    package): ``require("torch.utils.tensorboard", ..., package="tensorboard")``.

    Raises ConfigError naming ``purpose`` (the config key that needs it) and ``pip install 'kdlab[EXTRA]'`` when it is
    not installed, or when it is installed but fails to import (a torchvision built for another torch raises
    RuntimeError or ImportError from its compiled operators): the message then gives the import's own error.
    """
    package = package or module.split(".")[0]
    extra = EXTRA_OF.get(package, package)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] != package:
            raise ConfigError(f"{purpose} needs '{package}', which is installed but cannot import '{exc.name}'; "
                              f"reinstall it with: pip install 'kdlab[{extra}]'") from None
        raise ConfigError(f"{purpose} needs the optional package '{package}', which is not installed; install it "
                          f"with: pip install 'kdlab[{extra}]'") from None
    except Exception as exc:  # noqa: BLE001  (a broken binary extension raises anything; it is reported, not hidden)
        raise ConfigError(f"{purpose} needs '{package}', which is installed but failed to import "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}); "
                          f"it must match the installed torch: pip install 'kdlab[{extra}]'") from None
