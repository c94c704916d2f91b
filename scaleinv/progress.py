"""Progress for long commands: a live tqdm bar on a terminal, sparse plain lines in a log.

``progress(total, desc)`` returns a :class:`Progress`:

* stderr is a terminal -> a ``tqdm`` bar (redrawn at most every ``mininterval`` = 0.5 s; the
  postfix is updated without forcing a redraw, so a fast loop does not redraw every step);
* stderr is NOT a terminal (a log file, CI) -> no bar; one plain line every ``every`` units
  (default ``ceil(total / 20)``, i.e. <= 21 lines per run) and at the end, e.g.
  ``train sibert/sgd-wd-rgc: 300/1500 step (20%) 5.1 step/s eta 3m55s loss=6.90``.

``item(name)`` announces the unit about to run (the current claim / notebook / item): shown
in the bar's description on a terminal, as a ``[k/N] name`` line otherwise.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Optional, TextIO

__all__ = ["Progress", "progress"]


def _fmt_s(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


class Progress:
    def __init__(self, total: int, desc: str, unit: str = "step", initial: int = 0,
                 file: Optional[TextIO] = None, every: Optional[int] = None, enabled: bool = True,
                 tty: Optional[bool] = None):
        self.file = file or sys.stderr
        self.total, self.desc, self.unit = int(total), desc, unit
        self.n = self._last = int(initial)
        self.every = max(1, int(every) if every else math.ceil(max(self.total, 1) / 20))
        self.enabled = enabled
        self.tty = (getattr(self.file, "isatty", lambda: False)() if tty is None else tty) and enabled
        self.lines = 0           # plain lines written (for tests)
        self._t0, self._n0 = time.time(), self.n
        self._postfix: dict = {}
        self._bar = None
        if self.tty:
            from tqdm import tqdm
            self._bar = tqdm(total=self.total, initial=self.n, desc=desc, unit=unit, file=self.file,
                             dynamic_ncols=True, mininterval=0.5)

    def _line(self, msg: str) -> None:
        print(msg, file=self.file, flush=True)
        self.lines += 1

    def item(self, name: str) -> None:
        """Announce the unit that starts now."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_description(f"{self.desc} [{name}]", refresh=True)
        else:
            self._line(f"{self.desc}: [{self.n + 1}/{self.total}] {name} ...")

    def update(self, n: int = 1, **postfix) -> None:
        self.n += n
        if postfix:
            self._postfix = postfix
        if not self.enabled:
            return
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(n)
            return
        if self.n - self._last >= self.every or self.n >= self.total:
            self._last = self.n
            dt = time.time() - self._t0
            rate = (self.n - self._n0) / dt if dt > 0 else float("nan")
            eta = (self.total - self.n) / rate if rate and rate > 0 else float("nan")
            pf = " ".join(f"{k}={v}" for k, v in self._postfix.items())
            pct = 100.0 * self.n / self.total if self.total else 100.0
            eta_s = f" eta {_fmt_s(eta)}" if math.isfinite(eta) and self.n < self.total else ""
            speed = f"{rate:.3g} {self.unit}/s" if rate >= 1 or not rate > 0 else f"{1 / rate:.3g} s/{self.unit}"
            self._line(f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.0f}%) {speed}, "
                       f"{_fmt_s(dt)} elapsed{eta_s}" + (f" {pf}" if pf else ""))

    def write(self, msg: str, file: Optional[TextIO] = None) -> None:
        """A message that does not break the bar (stdout unless ``file``)."""
        if self._bar is not None:
            self._bar.write(msg, file=file or sys.stdout)
        else:
            print(msg, file=file or sys.stdout, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def progress(total: int, desc: str, **kw) -> Progress:
    return Progress(total, desc, **kw)
