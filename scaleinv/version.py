"""The package version, single-sourced from ``pyproject.toml``'s ``[project] version``.

In a source checkout (``pyproject.toml`` next to the ``scaleinv`` package) that file is read, so an
editable install never reports a stale version; an installed wheel has no ``pyproject.toml`` and
reports its metadata (``importlib.metadata``), which the build took from the same field.
``scaleinv --version`` prints it; ``CITATION.cff`` and ``CHANGELOG.md`` must name the same version
(checked by ``tests/core/test_core_version.py``). Versions follow semantic versioning (CHANGELOG.md).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

__all__ = ["version", "pyproject_version"]

UNKNOWN = "0+unknown"


def pyproject_version(path) -> Optional[str]:
    """``[project] version`` of the pyproject.toml at ``path`` if its ``[project] name`` is
    scaleinv, else None (a static string field; no TOML parser needed on Python 3.10)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    m = re.search(r"^\[project\][ \t]*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if not m:
        return None
    table = m.group(1)
    name = re.search(r'^name\s*=\s*"([^"]+)"', table, re.M)
    ver = re.search(r'^version\s*=\s*"([^"]+)"', table, re.M)
    if not name or name.group(1) != "scaleinv" or not ver:
        return None
    return ver.group(1)


def version() -> str:
    """The version of this scaleinv: the source checkout's pyproject.toml, else the installed
    distribution's metadata, else ``0+unknown``."""
    v = pyproject_version(Path(__file__).resolve().parent.parent / "pyproject.toml")
    if v:
        return v
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("scaleinv")
    except PackageNotFoundError:
        return UNKNOWN
