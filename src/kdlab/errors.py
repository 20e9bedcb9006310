"""Exception types that the CLI turns into clear messages and exit codes."""


class KdlabError(Exception):
    """Base class for every error kdlab raises on purpose."""


class ConfigError(KdlabError, ValueError):
    """A configuration value is invalid; the message names the key, the value and what is allowed."""


class DataError(KdlabError):
    """A dataset cannot be found, read or verified."""


class TrainingDiverged(KdlabError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class RunLocked(ConfigError):
    """Another process holds a run directory's lock; the message names that process (PID and host)."""
