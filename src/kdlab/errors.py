"""Exception types that the CLI turns into clear messages and exit codes."""

import errno


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


def describe_os_error(exc: OSError) -> str:
    """One line for an ``OSError``: the file, the reason, and what to do about it."""
    where = f"'{exc.filename}'" if exc.filename else "a file"
    reason = exc.strerror or str(exc)
    fix = {
        errno.ENOSPC: "the disk is full: free space (or choose another --out) and rerun the same command; a run "
                      "resumes from its last complete checkpoint",
        errno.EDQUOT: "the disk quota is exhausted: free space and rerun the same command; a run resumes from its "
                      "last complete checkpoint",
        errno.EROFS: "the filesystem is read-only: choose another --out",
        errno.EACCES: "permission denied: choose another location or fix its permissions",
        errno.EPERM: "operation not permitted: choose another location or fix its permissions",
        errno.ENOENT: "it does not exist",
        errno.EISDIR: "it is a directory, not a file",
        errno.ENOTDIR: "a part of the path is a file, not a directory",
    }.get(exc.errno, "check the path and rerun")
    return f"{where}: {reason}; {fix}"
