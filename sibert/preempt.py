"""Graceful preemption of a training run: SIGTERM / SIGINT stop at a step boundary with a checkpoint.

What a cluster does before it kills a job (SLURM, Kubernetes, preemptible VMs) is send SIGTERM
and wait a grace period; a user presses Ctrl-C (SIGINT). :class:`StopSignals` turns both into
an orderly stop of :func:`sibert.train.train`:

* **before the loop** (data, compilation, restore) the handler raises :class:`Preempted` at
  once: nothing was trained, what this call created is removed, the lock is released;
* **inside the loop** (``deferred``) the handler only records the signal; the loop finishes the
  step in flight, writes its metrics, waits for the in-flight orbax save, saves a checkpoint at
  the current step and raises :class:`Preempted` (``step``, ``checkpoint``). ``--resume`` then
  continues from that step exactly (batches are a pure function of (seed, step));
* a **second signal**, or the **grace period** (default :data:`DEFAULT_GRACE_S` seconds after
  the first signal) running out before the checkpoint is written, abandons the in-flight save:
  the abandon callbacks run (the trainer releases ``RUN/.lock``), one line is printed and the
  process ends with ``os._exit`` -- the last resort, because the main thread may be blocked in
  XLA or orbax code that no Python exception can interrupt. The unfinished orbax temporary
  folder it leaves is reported and moved aside by the next ``--resume``
  (:mod:`sibert.checkpoints`).

Exit codes (the shell's 128 + signal number): :data:`EXIT_CODES` = 143 for SIGTERM, 130 for
SIGINT. Handlers are installed only in the main thread and restored on exit; also where SIGINT
was inherited ignored (a job started in the background by a non-interactive shell), so that a
scheduler's or a test's SIGINT is honoured.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Callable, List, Optional

__all__ = ["DEFAULT_GRACE_S", "EXIT_CODES", "Preempted", "StopSignals", "exit_code", "signal_name"]

DEFAULT_GRACE_S = 30.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_CODES = {signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGINT: 128 + signal.SIGINT}   # 143, 130


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(signum: int) -> int:
    return EXIT_CODES.get(signum, 128 + int(signum))


class Preempted(BaseException):
    """The run was stopped by a signal. A BaseException (like KeyboardInterrupt), so that no
    ``except Exception`` on the way (e.g. orbax's damaged-checkpoint fallback) mistakes it for
    an error. ``step``: the step the run stopped at (None: before the first step);
    ``checkpoint``: the step of the checkpoint written on the way out (None: none written);
    ``problem``: why no final checkpoint could be written."""

    def __init__(self, signum: int, step: Optional[int] = None, checkpoint: Optional[int] = None,
                 problem: Optional[str] = None):
        super().__init__(signal_name(signum))
        self.signum, self.step, self.checkpoint, self.problem = signum, step, checkpoint, problem

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


class StopSignals:
    """``with StopSignals(grace_s) as stop:`` -- SIGTERM / SIGINT handlers (module docstring).

    ``stop.deferred = True`` switches from raising :class:`Preempted` at once to recording the
    signal (``stop.requested``, ``stop.signum``); ``stop.on_abandon(fn)`` registers a callback run
    before the process is abandoned (second signal or grace period over)."""

    def __init__(self, grace_s: float = DEFAULT_GRACE_S, prog: str = "scaleinv train",
                 stream=None):
        if not (grace_s >= 0 and grace_s < float("inf")):
            raise ValueError(f"grace_s: must be a finite number >= 0, got {grace_s!r}")
        self.grace_s = float(grace_s)
        self.prog = prog
        self.stream = stream
        self.signum: Optional[int] = None
        self.deferred = False
        self.where = "before the first step"
        self._old = {}
        self._abandon: List[Callable[[], None]] = []
        self._timer: Optional[threading.Timer] = None
        self._t_signal: Optional[float] = None

    # -- state
    @property
    def requested(self) -> bool:
        return self.signum is not None

    def on_abandon(self, fn: Callable[[], None]) -> None:
        self._abandon.append(fn)

    # -- handlers
    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> bool:
        if self._timer is not None:
            self._timer.cancel()
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}
        return False

    def _handler(self, signum, frame) -> None:
        from sibert import peers
        peers.notify("signal")   # a supervised multi-host child: the parent need not pass it on
        if self.signum is not None:
            self.abandon(f"second {signal_name(signum)} while stopping")
            return
        self.signum, self._t_signal = signum, time.monotonic()
        if self.grace_s == 0 and self.deferred:
            self.abandon("grace period 0 s")
            return
        if self.grace_s > 0:
            self._timer = threading.Timer(self.grace_s, self.abandon,
                                          args=(f"grace period of {self.grace_s:g} s over",))
            self._timer.daemon = True
            self._timer.start()
        if not self.deferred:
            raise Preempted(signum)

    def abandon(self, why: str) -> None:
        """Run the abandon callbacks, print one line, end the process now (``os._exit``)."""
        for fn in self._abandon:
            try:
                fn()
            except BaseException:  # the line below and the exit code are what matters now
                pass
        signum = self.signum if self.signum is not None else signal.SIGTERM
        stream = self.stream or sys.stderr
        try:
            stream.write(f"{self.prog}: stopped by {signal_name(signum)} {self.where}: {why}; "
                         f"the in-flight checkpoint was abandoned (the next --resume reports and moves it "
                         f"aside), lock released; exit {exit_code(signum)}\n")
            stream.flush()
            sys.stdout.flush()
        finally:
            # last resort: the main thread may be inside XLA / orbax code no exception reaches
            os._exit(exit_code(signum))
