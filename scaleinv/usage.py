"""Bad command-line input: one line, exit code 2, nothing written.

Every ``scaleinv <command>`` reports bad input as ONE line on stderr::

    scaleinv <command>: error: <field>: <what is wrong>; allowed: <values>

and exits with code 2 before it writes anything. A command raises :class:`UsageError` (or the
parser's own error for malformed flags); the dispatcher (:mod:`scaleinv.cli`) prints the line.
Output paths are checked up front, before any work, with :func:`check_output_file` /
:func:`check_output_dir` -- they leave nothing behind, so a refused command leaves no trace
and a rerun is never blocked. Permission bits are not enough (as root every ``os.access`` test
passes, yet ``mkdir`` under ``/proc`` fails): the real path is probed, by creating and at once
removing the first missing folder (:func:`probe_creatable`) or a temporary file in the existing
folder.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

__all__ = ["EXIT_USAGE", "UsageError", "OneLineParser", "check_output_file", "check_output_dir",
           "check_input_file", "require_modules", "probe_creatable"]

EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad input to a command; the message starts with the field (flag) it is about."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line ``PROG: error: MESSAGE`` (no usage block), exit 2."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _nearest_existing(p: Path) -> Path:
    a = p
    while not a.exists() and a != a.parent:
        a = a.parent
    return a


def _reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


def probe_creatable(p: Path, flag: str, shown) -> None:
    """Probe that ``p`` (a folder, existing or not) can hold new files, leaving nothing behind:
    an existing folder gets a temporary file, created and removed; otherwise its nearest
    existing ancestor gets a uniquely named temporary folder, created and removed (never the
    missing folder's own name: another process, e.g. the other trainers of a multi-host run,
    may be creating that one right now). UsageError naming ``flag`` if not."""
    import tempfile

    a = _nearest_existing(p)
    try:
        if a == p:
            fd, tmp = tempfile.mkstemp(prefix=".scaleinv-probe-", dir=p)
            os.close(fd)
            os.unlink(tmp)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".scaleinv-probe-", dir=a))
    except OSError as e:
        what = "write to" if a == p else "create"
        raise UsageError(f"{flag}: cannot {what} {str(shown)!r}: {_reason(e)} ({str(a)!r}); "
                         f"allowed: a path whose folder can be created") from None


def check_output_dir(path, flag: str) -> Path:
    """``path`` is a directory we may write into, or can be created; nothing is left behind
    (the real path is probed: :func:`probe_creatable`)."""
    p = Path(path).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag}: {str(path)!r} exists and is not a directory")
    a = _nearest_existing(p)
    if not a.is_dir():
        raise UsageError(f"{flag}: cannot create {str(path)!r}: {str(a)!r} is not a directory")
    if not os.access(a, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: cannot write {str(path)!r}: no write permission in {str(a)!r}")
    probe_creatable(p, flag, path)
    return p


def check_output_file(path, flag: str) -> Path:
    """``path`` can be written as a file (its folder exists or can be created); nothing is left
    behind (the real folder is probed: :func:`probe_creatable`)."""
    p = Path(path).expanduser().absolute()
    if str(path).endswith(os.sep) or p.is_dir():
        raise UsageError(f"{flag}: {str(path)!r} is a directory; give a file path")
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{flag}: cannot write {str(path)!r}: permission denied")
    a = _nearest_existing(p.parent)
    if not a.is_dir():
        raise UsageError(f"{flag}: cannot create {str(path)!r}: {str(a)!r} is not a directory")
    if not os.access(a, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: cannot write {str(path)!r}: no write permission in {str(a)!r}")
    if p.exists():
        try:
            open(p, "ab").close()   # opens for writing, changes nothing
        except OSError as e:
            raise UsageError(f"{flag}: cannot write {str(path)!r}: {_reason(e)}") from None
    else:
        probe_creatable(p.parent, flag, path)
    return p


def check_input_file(path, flag: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"{flag}: {str(path)!r} does not exist or is not a file")
    return p


def require_modules(command: str, modules, extra: str = "dev") -> None:
    """UsageError naming the extra to install when one of ``modules`` cannot be imported."""
    import importlib

    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise UsageError(f"{command} needs the {m!r} package ({type(e).__name__}: {e}); install the "
                             f"{extra} extra: pip install -e '.[{extra}]'") from None


def optional_check(check, path: Optional[str], flag: str):
    """``check(path, flag)`` unless ``path`` is None / '-' (stdout)."""
    if path is None or path == "-":
        return None
    return check(path, flag)
