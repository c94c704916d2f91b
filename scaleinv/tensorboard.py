"""TensorBoard scalar events from scaleinv's JSONL rows (optional: ``pip install 'scaleinv[tensorboard]'``).

The writer is tensorboardX's ``SummaryWriter`` (no torch / tensorflow needed). Every JSONL row
that scaleinv writes (``scaleinv train``'s ``metrics.jsonl`` / ``eval.jsonl``,
:class:`scaleinv.torch.dynamics.Dynamics`' ``metrics.jsonl``) becomes one scalar event per
numeric field, tag ``<prefix><key>`` (e.g. ``train/loss``, ``eval/heldout_loss``,
``layer/fc.weight/angle``), at ``global_step = row["step"]``. Booleans are written as 0 / 1;
``None``, non-finite numbers, strings and lists (the per-neuron lists) are skipped. Event values
are float32 (TensorBoard's ``simple_value``): a reader gets ``numpy.float32(jsonl_value)``.

:func:`check_logdir` validates a directory without writing anything (used by ``scaleinv train
--tensorboard`` before the run starts); :class:`ScalarWriter` creates its event file lazily, on
the first row, so that a run refused before its first step leaves no event file behind.
:func:`read_scalars` reads a directory back with TensorBoard's own reader (``EventAccumulator``;
needs the ``tensorboard`` package, which the dev extra installs).
"""
from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

__all__ = ["TensorBoardError", "check_logdir", "scalars", "ScalarWriter", "read_scalars"]


_FILES = itertools.count()


class TensorBoardError(ValueError):
    """A TensorBoard directory that cannot be written, or tensorboardX missing (one-line message)."""


def _writer_class():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise TensorBoardError("needs tensorboardX: pip install 'scaleinv[tensorboard]'") from None
    return SummaryWriter


def check_logdir(path: Union[str, Path]) -> Path:
    """``path`` as a Path if events can be written there (an existing writable directory, or a
    new one whose nearest existing parent is a writable directory) and tensorboardX is
    importable; else :class:`TensorBoardError`. Writes nothing."""
    _writer_class()
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise TensorBoardError(f"{str(path)!r} exists and is not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise TensorBoardError(f"{str(path)!r} is not writable")
        return p
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise TensorBoardError(f"cannot create {str(path)!r}: {str(parent)!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TensorBoardError(f"cannot create {str(path)!r}: {str(parent)!r} is not writable")
    return p


def scalars(row: Mapping[str, Any], prefix: str = "", step_key: str = "step") -> Dict[str, float]:
    """The row's fields that become scalar events: {tag: value} (module docstring)."""
    out: Dict[str, float] = {}
    for k, v in row.items():
        if k == step_key:
            continue
        if isinstance(v, bool):
            out[prefix + k] = float(v)
        elif isinstance(v, (int, float)) and math.isfinite(v):
            out[prefix + k] = float(v)
    return out


class ScalarWriter:
    """Writes JSONL-style rows as TensorBoard scalars into ``logdir`` (created on the first row).

    ``purge=True`` (``scaleinv train --tensorboard`` on ``--resume``): the event file starts with
    TensorBoard's purge marker at the first row's step, so that TensorBoard drops the events an
    earlier, killed session wrote at that step and later (the JSONL is truncated the same way)."""

    def __init__(self, logdir: Union[str, Path], flush_secs: int = 10, purge: bool = False):
        self.logdir = check_logdir(logdir)
        self.flush_secs, self.purge = flush_secs, purge
        self._writer: Optional[Any] = None

    def add_row(self, row: Mapping[str, Any], prefix: str = "", step_key: str = "step") -> None:
        """One row (a dict with an integer ``step_key``) as scalar events."""
        step = int(row[step_key])
        if self._writer is None:
            # tensorboardX names the file by the second and the host only: two writers opened in
            # the same second would share (and truncate) one file, hence a per-writer suffix
            self._writer = _writer_class()(logdir=str(self.logdir), flush_secs=self.flush_secs,
                                           purge_step=step if self.purge else None,
                                           filename_suffix=f".{os.getpid()}.{next(_FILES):06d}")
        for tag, v in scalars(row, prefix, step_key).items():
            self._writer.add_scalar(tag, v, global_step=step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_scalars(logdir: Union[str, Path]) -> Dict[str, Dict[int, float]]:
    """{tag: {step: value}} of the scalar events in ``logdir``, read with TensorBoard's
    ``EventAccumulator`` (all events kept, purge markers honoured; the last value of a step wins)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise TensorBoardError("reading events needs the tensorboard package: pip install tensorboard") from None
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {int(e.step): float(e.value) for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}
