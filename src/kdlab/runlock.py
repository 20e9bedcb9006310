"""Run-directory locks: at most one process at a time claims, trains or finishes a run directory.

The lock is an exclusive ``fcntl.flock`` on ``<run_dir>/.kdlab.lock``, held for the whole run. The kernel drops it
when the holder closes the file or exits in any way (crash, ``kill -9``, OOM kill), so a dead run never leaves a stale
lock; the file itself stays, and its content (the holder's PID and host) only serves to name the holder in messages.

What it guarantees:

- **Local filesystem** (ext4, xfs, btrfs, tmpfs, ...): between processes of one machine the lock is exact. Two
  processes never train one run directory at the same time; the second one either waits (the run store; it then
  finds the run finished and reuses it) or is refused with the holder's PID (``kdlab train|distill`` without
  ``--wait``). Because the lock file lives inside the run directory, a process that created the directory and then
  fails before writing the run's config removes the directory again; a waiter that was queued on that lock file sees
  that it was removed (its inode is no longer the path's) and starts over, so no two processes can hold "the" lock
  on two different inodes.
- **NFS**: since Linux 2.6.12 the NFS client emulates ``flock`` with a POSIX byte-range lock over the whole file, which
  goes to the server (NLM/lockd for NFSv2/v3, the protocol's own locking for NFSv4), so the lock also excludes
  processes on other machines mounting the same export — provided the server runs its lock service and the mount
  does not keep locks local. Locks are local only (each machine can take "the" lock at once, so two machines may
  train the same run and the last writer's files win, file by file) with NFSv2/v3 mounts using ``nolock``, with
  ``local_lock=flock`` or ``local_lock=all`` (Linux 2.6.37 and later), and on kernels before 2.6.12. With NFSv4 a
  client that loses contact with the server for longer than the lease (90 s by default on Linux servers) can lose its
  lock to another client; the Linux client then reports I/O errors on that file rather than re-taking it silently.
  Other shared filesystems (CIFS/SMB, Lustre, GPFS, CephFS) vary: check that ``flock`` is cluster-wide there.
  What stays true without a working lock: every file is written atomically (temp file + rename), so no reader ever
  sees a half-written file; what can break is "one writer per run", i.e. duplicated work and, with two different
  configs racing on one new directory, a mixed run.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import socket
import time
from pathlib import Path

from .errors import RunLocked

log = logging.getLogger("kdlab")

LOCK_NAME = ".kdlab.lock"


class RunLock:
    """An exclusive lock on one run directory, held until :meth:`release` (or the process ends)."""

    def __init__(self, run_dir: Path, fd: int, created_dir: bool) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK_NAME
        self.created_dir = created_dir  # this process made the directory (so it may remove it on a failed claim)
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (closing the file releases the flock), clearing this holder's name first."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None

    def abandon(self) -> None:
        """Undo a claim that failed before the run wrote anything: remove the lock file and, when this process created
        the directory and nothing else is in it, the directory; then release. Waiters notice and start over."""
        if self._fd is None:
            return
        try:
            if self.created_dir:
                self.path.unlink(missing_ok=True)
                leftovers = [p for p in self.run_dir.iterdir()] if self.run_dir.is_dir() else []
                if not leftovers:
                    shutil.rmtree(self.run_dir, ignore_errors=True)
        except OSError:
            pass  # best effort: a lock file left behind is harmless
        finally:
            self.release()

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire_run_lock(run_dir: str | os.PathLike, *, wait: bool) -> RunLock:
    """Lock ``run_dir`` (created when missing) exclusively for this process.

    ``wait=False``: raise :class:`~kdlab.errors.RunLocked` naming the holder when another process has it.
    ``wait=True``: block until the holder finishes (or dies), logging once whom it waits for.
    """
    run_dir = Path(run_dir)
    announced = False
    while True:
        created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                holder = _read_holder(fd)
                if not wait:
                    raise RunLocked(f"run directory '{run_dir}' is in use by {holder}; wait for it to finish "
                                    "(rerun with --wait to queue behind it) or choose another --out") from None
                if not announced:
                    log.info("waiting for %s: it is in use by %s", run_dir, holder)
                    announced = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if not _is_current(fd, path):
                os.close(fd)  # the previous holder removed the directory it had created: start over
                continue
            _write_holder(fd)
            return RunLock(run_dir, fd, created)
        except BaseException:
            os.close(fd)
            raise


def _is_current(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _write_holder(fd: int) -> None:
    text = f"pid {os.getpid()} on {socket.gethostname()}\n".encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)
    except OSError:
        pass  # the lock is what matters; a full disk only loses the holder's name


def _read_holder(fd: int, attempts: int = 50) -> str:
    """Who holds the lock, as written in the lock file. A holder writes its name just after taking the lock, so an
    empty file, or a name of a process of this host that no longer exists (a crashed earlier holder), is re-read for
    up to ``attempts`` x 10 ms before the holder is reported as unknown."""
    host = socket.gethostname()
    text = ""
    for _ in range(attempts):
        try:
            text = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        if text.startswith("pid ") and _plausibly_alive(text, host):
            return f"another process ({text})"
        time.sleep(0.01)
    return "another process (PID unknown)"


def _plausibly_alive(text: str, host: str) -> bool:
    """False only when ``text`` names a process of this host that does not exist."""
    parts = text.split()
    if len(parts) < 4 or parts[2] != "on" or parts[3] != host or not parts[1].isdigit():
        return True  # another host (or another format): cannot check
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True
