"""One trainer per run directory: a lock file ``RUN_DIR/.lock``.

The lock is created atomically (``open(O_CREAT | O_EXCL)``) and holds JSON
``{"pid", "host", "start_ticks", "created"}``. A second trainer on the same directory finds it
and is refused (:class:`RunLocked`, naming the holder's PID). A lock left behind by a trainer
that died without cleaning up (``kill -9``, power loss) is *stale*: same host and the PID no
longer runs (or runs a different process: its start time in ``/proc/PID/stat`` differs, PID
reuse); it is taken over with a one-line report. A lock from another host cannot be checked
and is refused (delete the file by hand if that host's trainer is gone).
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Optional

__all__ = ["LOCK_NAME", "RunLocked", "RunLock", "lock_holder", "is_stale"]

LOCK_NAME = ".lock"


class RunLocked(RuntimeError):
    """Another live trainer holds the run directory."""


def _start_ticks(pid: int) -> Optional[int]:
    """Process start time (clock ticks since boot, /proc/PID/stat field 22); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError as e:
        return e.errno != errno.ESRCH
    return True


def lock_holder(run_dir) -> Optional[dict]:
    """The lock's JSON (``{}`` if unreadable), or None when there is no lock."""
    p = Path(run_dir) / LOCK_NAME
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def is_stale(info: dict) -> bool:
    """True when the holder certainly no longer runs (same host; PID gone or reused)."""
    if not info or info.get("host") != socket.gethostname():
        # unreadable (a holder may be writing it right now) or another host: cannot tell
        return False
    pid = int(info.get("pid", -1))
    if pid <= 0 or not _pid_alive(pid):
        return True
    ticks = info.get("start_ticks")
    now = _start_ticks(pid)
    return ticks is not None and now is not None and ticks != now


class RunLock:
    """``with RunLock(run_dir):`` -- acquire on enter (RunLocked if held), release on exit."""

    def __init__(self, run_dir, log: Callable[[str], None] = print):
        self.path = Path(run_dir) / LOCK_NAME
        self.log = log
        self.held = False

    def _payload(self) -> bytes:
        pid = os.getpid()
        return json.dumps({"pid": pid, "host": socket.gethostname(), "start_ticks": _start_ticks(pid),
                           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode()

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(self._payload())
        return True

    def acquire(self) -> "RunLock":
        for _ in range(3):
            if self._try_create():
                self.held = True
                return self
            info = lock_holder(self.path.parent)
            if info is None:
                continue  # released meanwhile: try again
            if not is_stale(info):
                who = f"PID {info.get('pid', '?')} on {info.get('host', '?')}" if info else "another process"
                raise RunLocked(f"{self.path.parent} is in use by a running trainer ({who}, lock "
                                f"{self.path}); wait for it, or delete the lock if that process is gone")
            # stale: move it aside atomically (only one taker wins the rename), then retry
            aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
            try:
                os.rename(self.path, aside)
            except FileNotFoundError:
                continue
            try:
                taken = json.loads(aside.read_text())
            except (OSError, ValueError):
                taken = info
            if taken.get("pid") != info.get("pid"):  # someone replaced it between read and rename
                os.rename(aside, self.path) if not self.path.exists() else os.remove(aside)
                continue
            os.remove(aside)
            self.log(f"took over a stale lock of PID {info.get('pid')} (process gone) in {self.path.parent}")
        if self._try_create():
            self.held = True
            return self
        raise RunLocked(f"{self.path.parent}: could not take the lock {self.path}")

    def release(self) -> None:
        if not self.held:
            return
        info = lock_holder(self.path.parent)
        if info and info.get("pid") == os.getpid():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
