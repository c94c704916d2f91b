"""One trainer per run directory: a lock file ``RUN_DIR/.lock``.

The lock is created atomically (``open(O_CREAT | O_EXCL)``) and holds JSON
``{"pid", "host", "start_ticks", "cmdline", "created"}``. A second trainer on the same directory
finds it and is refused (:class:`RunLocked`, naming the holder's PID) -- but only if the lock
is honoured (:func:`holder_status`): same host, the PID alive, its start time in
``/proc/PID/stat`` the recorded one and its ``/proc/PID/cmdline`` the recorded command (a lock
recording no command: a scaleinv / sibert command). Anything else is *stale* and taken over with
a one-line report saying why: the trainer died (``kill -9``, power loss: "process gone"), its
PID was reused ("start time differs"), the PID runs something else (a planted ``{"pid": 1}``),
or the file is malformed (not JSON, a JSON list, a PID like ``"abc"`` or ``10**30``). A lock
from another host cannot be checked and is refused (delete the file by hand if that host's
trainer is gone).
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

__all__ = ["LOCK_NAME", "RunLocked", "RunLock", "lock_holder", "is_stale", "holder_status", "holder_name"]

LOCK_NAME = ".lock"
_NULL = ()            # lock_holder's value for a lock file holding JSON null (None means: no lock)
_PID_LIMIT = 1 << 22   # Linux's PID_MAX_LIMIT: a larger "pid" is not a process id


class RunLocked(RuntimeError):
    """Another live trainer holds the run directory."""


def _start_ticks(pid: int) -> Optional[int]:
    """Process start time (clock ticks since boot, /proc/PID/stat field 22); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError, OverflowError):
        return None


def _cmdline(pid: int) -> Optional[List[str]]:
    """argv of process ``pid`` (/proc/PID/cmdline); None if unknown."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, OverflowError):
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _looks_like_trainer(argv: Optional[List[str]]) -> bool:
    return bool(argv) and any("scaleinv" in a or "sibert" in a for a in argv)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    except OSError as e:
        return e.errno != errno.ESRCH
    return True


def _read_raw(path: Path) -> Optional[bytes]:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return b""


def lock_holder(run_dir) -> Optional[Any]:
    """The lock's parsed JSON (any JSON value; ``{}`` if it is not JSON), or None when there is
    no lock. A lock that is not JSON is read again for up to ~0.5 s first: its writer creates
    it and writes it right after (:meth:`RunLock._try_create`)."""
    p = Path(run_dir) / LOCK_NAME
    for attempt in range(6):
        raw = _read_raw(p)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
            return _NULL if value is None else value
        except ValueError:
            if attempt < 5:
                time.sleep(0.1)
    return {}


def _describe(argv: Optional[List[str]]) -> str:
    if argv is None:
        return "an unknown command"
    cmd = " ".join(argv)
    return repr(cmd if len(cmd) <= 80 else cmd[:77] + "...")


def holder_status(info: Any) -> Tuple[str, str]:
    """``(verdict, reason)`` of a lock's content, verdict one of

    * ``"live"`` -- honoured: the same host, the PID is alive, its start time (``/proc/PID/stat``)
      is the one recorded, and its command line is the recorded one (or, in a lock that records
      none, a scaleinv / sibert command);
    * ``"foreign"`` -- another host's lock: it cannot be checked from here, so it is honoured too;
    * ``"stale"`` -- anything else: the process is gone, the PID was reused, the PID runs
      something that is not the trainer, or the file is malformed (not a JSON object, a PID that
      is not a positive integer, no host). ``reason`` says which, for the one-line report."""
    if not isinstance(info, dict):
        kind = "null" if info is _NULL else {list: "list", str: "string", bool: "boolean"}.get(type(info), "number")
        return "stale", f"malformed lock file (JSON {kind}, not an object)"
    if not info:
        return "stale", "malformed lock file (empty or not JSON)"
    host, pid = info.get("host"), info.get("pid")
    if not isinstance(host, str) or not host:
        return "stale", f"malformed lock file (host {host!r})"
    if host != socket.gethostname():
        return "foreign", f"held on host {host}"
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < _PID_LIMIT:
        return "stale", f"malformed lock file (pid {pid!r} is not a process id)"
    if not _pid_alive(pid):
        return "stale", "process gone"
    ticks, now = info.get("start_ticks"), _start_ticks(pid)
    argv = _cmdline(pid)
    if now is None and argv is None:
        return "live", f"PID {pid} alive (no /proc here: cannot check more)"
    if isinstance(ticks, bool) or not isinstance(ticks, int):
        return "stale", (f"PID {pid} is alive but the lock records no start time, so it is not the trainer that "
                         f"wrote it (PID {pid} runs {_describe(argv)})")
    if now is not None and ticks != now:
        return "stale", f"PID {pid} was reused by another process (start time {now}, the lock says {ticks})"
    recorded = info.get("cmdline")
    if recorded is not None:
        if argv is not None and recorded != argv:
            return "stale", f"PID {pid} runs {_describe(argv)}, not the trainer that wrote the lock"
    elif not _looks_like_trainer(argv):
        return "stale", f"PID {pid} runs {_describe(argv)}, not a scaleinv trainer"
    return "live", f"PID {pid} on {host}"


def is_stale(info: Any) -> bool:
    """True when the lock is not honoured (:func:`holder_status`): no live trainer holds it."""
    return holder_status(info)[0] == "stale"


def holder_name(info: Any) -> str:
    if isinstance(info, dict) and info:
        return f"PID {info.get('pid', '?')} on {info.get('host', '?')}"
    return "another process"


class RunLock:
    """``with RunLock(run_dir):`` -- acquire on enter (RunLocked if held), release on exit."""

    def __init__(self, run_dir, log: Callable[[str], None] = print):
        self.path = Path(run_dir) / LOCK_NAME
        self.log = log
        self.held = False

    def _payload(self) -> bytes:
        pid = os.getpid()
        return json.dumps({"pid": pid, "host": socket.gethostname(), "start_ticks": _start_ticks(pid),
                           "cmdline": _cmdline(pid),
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
            raw = _read_raw(self.path)
            info = lock_holder(self.path.parent)
            if info is None:
                continue  # released meanwhile: try again
            verdict, reason = holder_status(info)
            if verdict != "stale":
                raise RunLocked(f"{self.path.parent} is in use by a running trainer ({holder_name(info)}, lock "
                                f"{self.path}); wait for it, or delete the lock if that process is gone")
            # stale: move it aside atomically (only one taker wins the rename), then retry
            aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
            try:
                os.rename(self.path, aside)
            except FileNotFoundError:
                continue
            if _read_raw(aside) != raw:  # someone replaced it between read and rename: put it back
                os.rename(aside, self.path) if not self.path.exists() else os.remove(aside)
                continue
            os.remove(aside)
            pid = info.get("pid") if isinstance(info, dict) else None
            who = f"PID {pid}" if isinstance(pid, int) and not isinstance(pid, bool) and "malformed" not in reason \
                else "a malformed lock file"
            self.log(f"took over a stale lock of {who} ({reason}) in {self.path.parent}")
        if self._try_create():
            self.held = True
            return self
        raise RunLocked(f"{self.path.parent}: could not take the lock {self.path}")

    def release(self) -> None:
        if not self.held:
            return
        info = lock_holder(self.path.parent)
        if isinstance(info, dict) and info.get("pid") == os.getpid():
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
