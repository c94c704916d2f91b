"""orbax checkpoints of a training run, restored from the newest INTACT one.

Layout: ``RUN_DIR/checkpoints/<step>/{state,meta}`` written by an orbax ``CheckpointManager``
(items ``state``: params, optimizer states, step, RNG key; ``meta``: JSON with the step and
the data position). A save first goes to ``<step>.orbax-checkpoint-tmp-<timestamp>`` and is
renamed when finished; orbax then writes ``commit_success.txt`` markers in the step folder and
in every item folder.

:func:`restore_latest_intact` walks the steps newest first and uses the first one that

1. is finalized by orbax's rule (``orbax.checkpoint.path.step.is_path_finalized``: not a
   temporary folder) and carries the commit markers (when this orbax writes them at all);
2. has orbax's ``_CHECKPOINT_METADATA``, a ``state/`` item and a ``meta/metadata`` JSON with
   ``data_position``;
3. restores: every array file present and readable with the expected shapes and dtypes.

Every rejected step is reported in one line (``checkpoint step 40 is damaged (meta/metadata
missing); trying step 30``) and moved to ``RUN_DIR/damaged_checkpoints/`` once an intact step
was found (so that orbax can save that step number again and never lists it as the latest).
When checkpoints exist but none is intact, :class:`CheckpointError` is raised and nothing is
moved (``scaleinv train`` exits with code 4).

Writing: :func:`save_checkpoint` and :func:`finish_checkpoints` turn a failed orbax save (an
unwritable or vanished run directory, a full disk; orbax's async save fails in a background
thread and surfaces at the next save or wait) into :class:`CheckpointWriteError` (one line,
``scaleinv train`` exits with code 5). :func:`release_orbax_threads` wakes the orbax signalling
threads such a failed save leaves waiting for a signal that never comes: they are not daemon
threads, so without it the interpreter would wait for them at exit (a hang).
"""
from __future__ import annotations

import json
import logging
import shutil
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Tuple

__all__ = ["CheckpointError", "CheckpointWriteError", "checkpoint_manager", "save_checkpoint",
           "finish_checkpoints", "close_manager", "release_orbax_threads", "quiet_orbax_errors",
           "restore_checkpoint", "restore_latest_intact", "step_problem", "list_steps", "last_good_step"]

TMP_MARK = ".orbax-checkpoint-tmp"
MARKER = "commit_success.txt"


class CheckpointError(RuntimeError):
    """Checkpoints exist but none of them is intact (exit code 4 of ``scaleinv train``)."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (exit code 5 of ``scaleinv train``); ``step`` is the
    save that failed (or surfaced the failure), ``cause`` the first line of orbax's error."""

    def __init__(self, step: Optional[int], cause: str):
        self.step, self.cause = step, cause
        where = f" (noticed at the save of step {step})" if step is not None else ""
        super().__init__(f"a checkpoint could not be written{where}: {cause}")


def checkpoint_manager(run_dir: Path, cfg):
    import orbax.checkpoint as ocp
    opts = ocp.CheckpointManagerOptions(max_to_keep=cfg.keep_ckpts, create=True)
    return ocp.CheckpointManager((Path(run_dir) / "checkpoints").resolve(), options=opts,
                                 item_names=("state", "meta"))


def save_checkpoint(mngr, state, step: int):
    """Start saving ``state`` as checkpoint ``step`` (async: orbax finishes it in the background);
    :class:`CheckpointWriteError` when this save, or the previous one, failed."""
    import orbax.checkpoint as ocp
    meta = {"step": int(step), "data_position": int(step)}
    try:
        mngr.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                      meta=ocp.args.JsonSave(meta)))
    except Exception as e:  # orbax re-raises a background failure here, or fails itself
        raise CheckpointWriteError(step, _first_line(_root_cause(e))) from e


def finish_checkpoints(mngr, step: Optional[int] = None) -> None:
    """Wait for the in-flight save; :class:`CheckpointWriteError` if it failed."""
    try:
        mngr.wait_until_finished()
    except Exception as e:
        raise CheckpointWriteError(step, _first_line(_root_cause(e))) from e


def close_manager(mngr) -> Optional[str]:
    """Finish (or give up on) the in-flight save and close ``mngr``, never raising: returns the
    first line of the error a failed save left (None if none). Then wakes the orbax threads a
    failed save leaves waiting (:func:`release_orbax_threads`)."""
    problem = None
    for fn in (mngr.wait_until_finished, mngr.close):
        try:
            fn()
        except Exception as e:
            problem = problem or _first_line(_root_cause(e))
    release_orbax_threads()
    return problem


def release_orbax_threads(timeout_s: float = 10.0) -> List[str]:
    """Wake and join orbax's ``_SignalingThread`` threads (the names of those still alive
    afterwards are returned).

    Cause of the hang this prevents: orbax runs each step of an async save in a
    ``_SignalingThread`` that first waits (up to orbax's coordination timeout, many minutes) for
    a signal from the previous step of the same save. When a step fails (e.g. the directory
    became unwritable) the signal is never set, and these threads are not daemon threads, so
    ``threading._shutdown`` waits for them: the process never exits. Each waiting thread is
    cancelled and its awaited signals are set, so it returns at once without running its step."""
    try:  # orbax internals (0.11 / 0.12); if they move, fall back to plain joins
        from orbax.checkpoint._src.futures import future as ofut
        kind = ofut._SignalingThread
    except (ImportError, AttributeError):
        ofut, kind = None, None
    waiting = [t for t in threading.enumerate()
               if t is not threading.current_thread() and kind is not None and isinstance(t, kind) and t.is_alive()]
    if waiting:   # their cancelled steps' coroutines are dropped unawaited: not worth a warning each
        warnings.filterwarnings("ignore", message=r"coroutine .* was never awaited", category=RuntimeWarning)
    for t in waiting:
        try:
            t.cancel()
            ofut.set_signals(getattr(t, "_receive_signals", ()), operation_id=getattr(t, "_operation_id", None))
        except Exception:
            pass
    end = time.monotonic() + timeout_s
    for t in waiting:
        threading.Thread.join(t, max(0.0, end - time.monotonic()))
    # only orbax's own threads count: other non-daemon threads (a test runner's, a TensorBoard
    # writer's, the caller's) are not the trainer's to judge, and ending the process for them
    # would kill a host that called the CLI in-process (seen: a pytest-xdist worker)
    return [t.name for t in waiting if t.is_alive()]


class _OrbaxErrors(logging.Filter):
    """Drops orbax's ERROR records (tracebacks of a failed background save) from the ``absl``
    logger and keeps the first message: the trainer reports the failure in one line itself."""

    def __init__(self):
        super().__init__()
        self.first: Optional[str] = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and "orbax" in (record.pathname or ""):
            if self.first is None:
                self.first = record.getMessage().splitlines()[0][:300] if record.getMessage() else ""
            return False
        return True


class quiet_orbax_errors:
    """``with quiet_orbax_errors() as q:`` -- orbax ERROR logs dropped (first one: ``q.first``)."""

    def __enter__(self) -> _OrbaxErrors:
        self.f = _OrbaxErrors()
        self.loggers = [logging.getLogger("absl"), logging.getLogger()]
        for lg in self.loggers:
            lg.addFilter(self.f)
        return self.f

    def __exit__(self, *exc) -> bool:
        for lg in self.loggers:
            lg.removeFilter(self.f)
        return False


def _root_cause(e: BaseException) -> BaseException:
    """The innermost cause/context of a chained exception (orbax wraps the OSError)."""
    seen = set()
    while id(e) not in seen:
        seen.add(id(e))
        nxt = e.__cause__ or e.__context__
        if nxt is None:
            break
        e = nxt
    return e


def last_good_step(run_dir: Path) -> Optional[int]:
    """Newest step folder under ``run_dir/checkpoints`` that looks intact (:func:`step_problem`)."""
    steps, _ = list_steps(Path(run_dir) / "checkpoints")
    markers = any((p / MARKER).is_file() for _, p in steps)
    for step, path in steps:
        try:
            if step_problem(path, markers) is None:
                return step
        except OSError:
            continue
    return None


def list_steps(ckpt_dir: Path) -> Tuple[List[Tuple[int, Path]], List[Path]]:
    """(finalized-looking step folders newest first, unfinished orbax temporary folders)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return [], []
    steps, tmps = [], []
    for p in ckpt_dir.iterdir():
        if TMP_MARK in p.name:
            tmps.append(p)
        elif p.name.isdigit():
            steps.append((int(p.name), p))
    return sorted(steps, reverse=True), sorted(tmps)


def step_problem(path: Path, markers_expected: bool = True) -> Optional[str]:
    """What is structurally wrong with the step folder ``path`` (None if nothing is)."""
    import orbax.checkpoint as ocp

    path = Path(path)
    if not path.is_dir():
        return "not a directory"
    if not any(path.iterdir()):
        return "empty step directory"
    if not ocp.path.step.is_path_finalized(str(path.resolve())):
        return "not finalized by orbax (unfinished save)"
    if markers_expected and not (path / MARKER).is_file():
        return f"no orbax commit marker ({MARKER}): unfinished save"
    if not (path / "_CHECKPOINT_METADATA").is_file():
        return "orbax _CHECKPOINT_METADATA missing"
    for item in ("state", "meta"):
        if not (path / item).is_dir():
            return f"{item}/ missing"
        if markers_expected and not (path / item / MARKER).is_file():
            return f"{item}/{MARKER} missing: unfinished save"
    meta_file = path / "meta" / "metadata"
    if not meta_file.is_file():
        return "meta/metadata missing"
    try:
        meta = json.loads(meta_file.read_text())
        int(meta["data_position"])
    except (ValueError, KeyError, TypeError) as e:
        return f"meta/metadata unreadable ({type(e).__name__}: {e})"
    if not (path / "state" / "_METADATA").is_file():
        return "state/_METADATA missing"
    return None


_ORBAX_SHARD_READER = "_read_array_index_and_device_put"


class _reads_finish_before_loop_closes:
    """``with _reads_finish_before_loop_closes():`` -- orbax restores whose event loop is closed
    only after every read it started has finished.

    The cause of "RuntimeError: Event loop is closed" tracebacks after a damaged array file
    (hundreds of lines on a large state; once the last stderr line of
    ``test_no_intact_checkpoint_exit_4_nothing_changed``): orbax runs a restore with
    ``loop.run_until_complete(gather(reads))`` in a fresh loop and closes the loop in a
    ``finally`` (``asyncio_utils._run_sync_via_new_loop``). When one read fails, ``gather``
    raises at once while the other shard reads are still in flight in TensorStore's threads;
    each of them, on completing, calls ``loop.call_soon_threadsafe`` on the now closed loop,
    which raises in TensorStore's thread and is printed there -- at any moment later, even
    after the fallback to an older step succeeded, or as the process exits. Here the loop first
    waits for its remaining tasks (bounded; then they are cancelled) and only then closes, so
    every completion lands on an open loop and the failure stays one line per rejected step."""

    def __enter__(self):
        try:
            from orbax.checkpoint._src import asyncio_utils as au
            self.au, self.orig = au, au._run_sync_via_new_loop
        except (ImportError, AttributeError):   # another orbax layout: nothing to patch
            self.au = None
            return self
        self.au._run_sync_via_new_loop = _run_sync_draining
        return self

    def __exit__(self, *exc) -> bool:
        if self.au is not None:
            self.au._run_sync_via_new_loop = self.orig
        return False


def _run_sync_draining(coro, drain_s: float = 120.0):
    """orbax's ``_run_sync_via_new_loop`` that lets the loop's other tasks finish before closing."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=drain_s))
                for t in pending:
                    if not t.done():
                        t.cancel()
                loop.run_until_complete(asyncio.wait(pending, timeout=10.0))
                for t in pending:   # retrieved: no "exception was never retrieved" at exit
                    if t.done() and not t.cancelled():
                        t.exception()
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _drop_orbax_abandoned_reads() -> None:
    """Silence one known orbax artefact, chaining to the previous ``sys.unraisablehook``.

    When a damaged array file fails a restore, orbax abandons the other shard reads; its reader
    coroutine (``_read_array_index_and_device_put``) catches ``BaseException``, so the
    ``GeneratorExit`` of closing it at garbage collection becomes an "Exception ignored in
    <coroutine ...>" dump of a TensorStore spec on stderr, possibly at interpreter exit, after
    ``scaleinv train``'s one-line error. The restore failure itself is already reported; only
    these unraisables of that coroutine are dropped, everything else goes to the old hook."""
    old = sys.unraisablehook
    if getattr(old, "_scaleinv_orbax_filter", False):
        return

    def hook(u):
        if getattr(getattr(u, "object", None), "__name__", "") == _ORBAX_SHARD_READER:
            return
        old(u)

    hook._scaleinv_orbax_filter = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _first_line(e: BaseException, limit: int = 200) -> str:
    s = str(e).strip().splitlines()
    s = s[0] if s else ""
    return f"{type(e).__name__}: {s[:limit]}"


def restore_latest_intact(mngr, abstract_state, run_dir: Path,
                          log: Callable[[str], None] = print, move_damaged: bool = True):
    """(state, meta, step) from the newest intact checkpoint; ``(None, None, None)`` when the
    run has no checkpoint at all; :class:`CheckpointError` when some exist but none is intact.

    Damaged / unfinished newer ones are reported (one line each) and, once an intact step was
    found, moved to ``run_dir/damaged_checkpoints/`` (``move_damaged=False``: left in place)."""
    import orbax.checkpoint as ocp

    run_dir = Path(run_dir)
    steps, tmps = list_steps(run_dir / "checkpoints")
    for t in tmps:
        log(f"checkpoint {t.name}: unfinished save (orbax temporary folder, no commit); ignored")
    if not steps:
        return None, None, None
    markers_expected = any((p / MARKER).is_file() for _, p in steps)
    rejected: List[Tuple[int, Path, str]] = []
    for i, (step, path) in enumerate(steps):
        problem = step_problem(path, markers_expected)
        out = None
        if problem is None:
            try:
                with _reads_finish_before_loop_closes():
                    out = mngr.restore(step, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
                if int(out["meta"]["data_position"]) != step:
                    problem = f"meta says data_position {out['meta']['data_position']}, folder says {step}"
            except Exception as e:  # orbax / tensorstore raise many types for damaged files
                problem = f"restore failed ({_first_line(e)})"
                _drop_orbax_abandoned_reads()
        if problem is None:
            if move_damaged and (rejected or tmps):
                dest = run_dir / "damaged_checkpoints"
                dest.mkdir(exist_ok=True)
                stamp = time.strftime("%Y%m%dT%H%M%S")
                for _, p, _ in rejected:
                    shutil.move(str(p), str(dest / f"{p.name}-{stamp}"))
                for t in tmps:
                    shutil.move(str(t), str(dest / f"{t.name}-{stamp}"))
                mngr.reload()
                log(f"moved {len(rejected) + len(tmps)} damaged/unfinished checkpoint(s) to {dest}")
            return out["state"], out["meta"], step
        nxt = steps[i + 1][0] if i + 1 < len(steps) else None
        log(f"checkpoint step {step} is damaged ({problem}); "
            + (f"trying step {nxt}" if nxt is not None else "no older checkpoint left"))
        rejected.append((step, path, problem))
    raise CheckpointError(
        f"no intact checkpoint in {run_dir / 'checkpoints'} (damaged: "
        + "; ".join(f"step {s}: {p}" for s, _, p in rejected)
        + "); nothing was changed. Start a new run in a new --out directory")


def restore_checkpoint(mngr, abstract_state):
    """(state, meta) of orbax's latest step, no integrity fallback (``(None, None)`` if none)."""
    import orbax.checkpoint as ocp
    step = mngr.latest_step()
    if step is None:
        return None, None
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                      meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]
