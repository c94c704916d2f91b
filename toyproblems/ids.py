"""Declared claim ids (issue 27): each claim function states its own id, the group prefix of its rows.

    @claim_id("M2")
    def claim_dataset_scaling(seed, quick, out_dir): ...   # rows M2.1, M2.2, ...

``scaleinv verify`` selects claims by these ids (``--only M2``) and checks that every row a claim
returns is ``<id>.<tag>``; inserting a claim into a list, or reordering one, renumbers nothing.
"""
from __future__ import annotations

import re
from typing import Callable, TypeVar

__all__ = ["claim_id", "ID_PATTERN"]

ID_PATTERN = re.compile(r"[A-Z][0-9]+")
F = TypeVar("F", bound=Callable)


def claim_id(cid: str) -> Callable[[F], F]:
    """Decorator: set ``fn.claim_id = cid`` (one capital letter and a number, e.g. ``"C5"``, ``"R2"``)."""
    if not isinstance(cid, str) or not ID_PATTERN.fullmatch(cid):
        raise ValueError(f"claim id must be a capital letter and a number (e.g. 'C5'), got {cid!r}")

    def declare(fn: F) -> F:
        fn.claim_id = cid  # type: ignore[attr-defined]
        return fn

    return declare
