"""Where kdlab keeps downloaded datasets."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """Return the dataset cache directory.

    The first that is set wins: ``$KDLAB_DATA``, ``$XDG_CACHE_HOME/kdlab/data``, ``~/.cache/kdlab/data``
    (the XDG base-directory convention). The directory is not created here.
    """
    explicit = os.environ.get("KDLAB_DATA")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "kdlab" / "data"
    return Path.home() / ".cache" / "kdlab" / "data"
