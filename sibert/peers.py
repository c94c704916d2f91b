"""Multi-host runs that end cleanly when a peer dies or never joins (``scaleinv train``, exit 6).

What JAX offers, and why it is not enough on its own (jax 0.10): ``jax.distributed.initialize``
takes ``initialization_timeout`` (how long ``connect`` waits for every process to register),
``heartbeat_timeout_seconds`` (after which the coordination service declares a silent process
dead) and ``shutdown_timeout_seconds``. When one of them fires, the JAX client calls its
``missed_heartbeat_callback`` -- by default ``LOG(QFATAL)``: a C++ abort with a stack trace,
nothing Python can catch, no lock released. A Python callback cannot replace it (jaxlib cannot
convert the ``absl::Status`` argument: ``std::bad_cast``, then ``std::terminate``), and
``jax_enable_recoverability`` stops the service from aborting process 0 but not a client whose
coordinator is gone (it aborts the moment its error poll fails). A collective with a dead peer
fails at once in Python (``Gloo all-reduce failed: Connection closed by peer``) but does not say
which process is gone. And gloo prints ``[Gloo] Rank N is connected ...`` on the C++ stdout.

So ``scaleinv train`` with ``JAX_COORDINATOR_ADDRESS`` set runs the trainer as a **supervised
child** (:func:`supervise`); the parent imports no JAX and owns the outcome:

* the child's Python ``sys.stdout`` / ``sys.stderr`` are the parent's own stdout / stderr
  (file descriptors handed down), so the JSON summary, the progress bar and every Python
  message go straight through; the child's C/C++ file descriptors 1 and 2 go to a pipe that the
  parent reads: gloo's ``[Gloo] Rank`` chatter is dropped (never on stdout), XLA / JAX log
  messages (``E1207 12:00:00.000 ... file.cc:123] ...``) and what follows them are held back and
  printed only if the run does not end in a recognised peer failure (nothing is hidden from an
  unexplained crash);
* the child reports on a control pipe: ``connecting`` (about to call
  ``jax.distributed.initialize``), ``joined``, ``collective <message>`` (a collective failed:
  :func:`report_failure`), ``signal`` (it received SIGTERM / SIGINT itself);
* **peer never started**: no ``joined`` within ``--peer-timeout`` seconds of ``connecting``
  -> the child is killed; for process 0 the peer named is the process that did not register
  (with 2 processes: process 1), for another process the coordinator (process 0) when its
  address refuses connections;
* **peer died**: a failed collective names the other process at once when there are 2; JAX's
  own heartbeat (``heartbeat_timeout_seconds`` = ``--peer-timeout``) catches a peer that died
  or hangs while no collective runs, and the child's abort message names the peers the
  coordination service declared dead (``The following tasks are unhealthy (stopped sending
  heartbeats): 1``) or the coordinator (process 0) when its error poll fails; with more than 2
  processes a failed collective waits up to ``--peer-timeout`` for that verdict;
* then the parent removes what the child held (``RUN/.lock`` if the child's PID wrote it; the
  unfinished ``*.orbax-checkpoint-tmp*`` folders when the child was process 0, the one that
  writes and finalizes checkpoints), prints ONE line naming the peer and the last good
  checkpoint (:func:`sibert.checkpoints.last_good_step`) and exits :data:`EXIT_PEER`;
* SIGTERM / SIGINT reaching the parent are passed to the child unless the child reports within
  :data:`FORWARD_DELAY_S` that it got the signal itself (a scheduler signalling the whole job),
  so a preempted multi-host run stops exactly as a single-host one (:mod:`sibert.preempt`); the
  child runs in its own session and gets SIGTERM if the parent dies.

A dead process's own lock and unfinished checkpoint (process 0 killed with ``kill -9``) cannot
be removed by anyone: the next ``--resume`` takes the stale lock over and moves the unfinished
folder aside (:mod:`sibert.runlock`, :mod:`sibert.checkpoints`).
"""
from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

__all__ = ["EXIT_PEER", "DEFAULT_PEER_TIMEOUT_S", "CHILD_ENV", "TIMEOUT_ENV", "supervise_wanted", "is_child",
           "child_setup", "notify", "report_failure", "peer_timeout", "supervise", "diagnose"]

EXIT_PEER = 6
DEFAULT_PEER_TIMEOUT_S = 120.0
CHILD_ENV = "SCALEINV_PEER_CHILD"        # "stdout_fd,stderr_fd,control_fd" in the supervised child
TIMEOUT_ENV = "SCALEINV_PEER_TIMEOUT"    # --peer-timeout, for jax.distributed.initialize in the child
FORWARD_DELAY_S = 1.0
KEEP_LINES = 4000                        # native log lines held back (the first ones and the newest)

_GLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]")
_CHATTER = re.compile(r"^\[Gloo\] Rank \d+ is connected")
_control = None


# ----------------------------------------------------------------------------- child side
def supervise_wanted(env=None) -> bool:
    """True in a ``scaleinv train`` that should supervise: multi-host variables set, not a child."""
    env = os.environ if env is None else env
    return bool(env.get("JAX_COORDINATOR_ADDRESS", "").strip()) and not env.get(CHILD_ENV)


def is_child() -> bool:
    return bool(os.environ.get(CHILD_ENV))


def child_setup() -> None:
    """In the supervised child: Python's stdout / stderr become the parent's (the descriptors in
    :data:`CHILD_ENV`); C/C++ output stays on descriptors 1 / 2, the parent's filtered pipe."""
    global _control
    if _control is not None or not is_child():
        return
    out_fd, err_fd, ctl_fd = (int(x) for x in os.environ[CHILD_ENV].split(","))
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout = open(out_fd, "w", buffering=1, closefd=False)
    sys.stderr = open(err_fd, "w", buffering=1, closefd=False)
    _control = open(ctl_fd, "w", buffering=1, closefd=False)


def notify(msg: str) -> None:
    """One control line to the supervising parent (nothing when not supervised)."""
    if _control is None:
        return
    try:
        _control.write(" ".join(msg.split()) + "\n")
        _control.flush()
    except (OSError, ValueError):
        pass


def _looks_like_peer_failure(e: BaseException) -> bool:
    text = str(e)
    return ("Gloo" in text or "gloo" in text or "Connection closed by peer" in text
            or "Connection reset by peer" in text or "coordination service" in text.lower())


def report_failure(e: BaseException) -> None:
    """Called where a multi-host step / evaluation / save raised: a collective that failed
    because a peer is gone is reported to the parent, which then ends this process."""
    if _control is not None and _looks_like_peer_failure(e):
        notify("collective " + " ".join(str(e).split())[:300])
        # the parent kills this process now (2 processes) or after the heartbeat verdict; never
        # run on into orbax / jax shutdown code that waits for the dead peer
        time.sleep(3 * peer_timeout() + 30)
        os._exit(EXIT_PEER)


def peer_timeout(env=None) -> float:
    env = os.environ if env is None else env
    try:
        v = float(env.get(TIMEOUT_ENV, DEFAULT_PEER_TIMEOUT_S))
    except ValueError:
        return DEFAULT_PEER_TIMEOUT_S
    return v if v > 0 and v < float("inf") else DEFAULT_PEER_TIMEOUT_S


# ----------------------------------------------------------------------------- diagnosis
def diagnose(text: str, process_id: int, num_processes: Optional[int]) -> Optional[str]:
    """The peer(s) a dead child's native log blames, as words (None: not a peer failure)."""
    m = re.search(r"stopped sending heartbeats\)\s*:\s*((?:\s*(?:/job:\S+/task:)?\d+[,\s]*)+)", text)
    if m:
        ids = sorted({int(x) for x in re.findall(r"(?:task:)?(\d+)", m.group(1))} - {process_id})
        if ids:
            return _procs(ids, num_processes) + " stopped sending heartbeats (died or hangs)"
    if process_id != 0 and re.search(r"PollForError|Heartbeat|heartbeat", text) and \
            re.search(r"Socket closed|UNAVAILABLE|Connection refused|failed to connect|DEADLINE_EXCEEDED", text):
        return _procs([0], num_processes) + " (the coordinator) is gone or unreachable"
    if "RegisterTask" in text and "DEADLINE_EXCEEDED" in text:
        return "not every process joined"
    return None


def _procs(ids: Sequence[int], n: Optional[int]) -> str:
    of = f" (of {n})" if n else ""
    return ("process " if len(ids) == 1 else "processes ") + ", ".join(map(str, ids)) + of


def _refuses(addr: str) -> bool:
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3):
            return False
    except OSError:
        return True


def _never_joined(process_id: int, n: Optional[int], addr: str) -> str:
    if process_id == 0:
        if n == 2:
            return _procs([1], n) + " never joined"
        return "not every process joined (process 0 cannot tell which did not)"
    if _refuses(addr):
        return _procs([0], n) + f" (the coordinator at {addr}) never started"
    return f"not every process joined (the coordinator at {addr} answers)"


# ----------------------------------------------------------------------------- cleanup
def _cleanup(run_dir: Path, child_pid: int, process_id: int) -> List[str]:
    done = []
    lock = run_dir / ".lock"
    try:
        info = json.loads(lock.read_text())
    except (OSError, ValueError):
        info = None
    if isinstance(info, dict) and info.get("pid") == child_pid:
        try:
            lock.unlink()
            done.append("lock released")
        except OSError:
            pass
    elif isinstance(info, dict) and info:
        done.append(f"the lock of PID {info.get('pid')} stays until --resume takes it over")
    if process_id == 0:
        from sibert.checkpoints import TMP_MARK
        ckpt = run_dir / "checkpoints"
        tmps = [p for p in ckpt.iterdir() if TMP_MARK in p.name] if ckpt.is_dir() else []
        for p in tmps:
            shutil.rmtree(p, ignore_errors=True)
        if tmps:
            done.append(f"{len(tmps)} unfinished checkpoint folder{'s' if len(tmps) > 1 else ''} removed")
    return done


def _last_good(run_dir: Path) -> str:
    try:
        from sibert.checkpoints import last_good_step
        step = last_good_step(run_dir)
    except Exception:   # the line is what matters now
        step = None
    return f"step {step}" if step is not None else "none"


# ----------------------------------------------------------------------------- parent side
def _pdeathsig() -> None:
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))   # PR_SET_PDEATHSIG
    except Exception:
        pass


class _Native:
    """The child's C/C++ output: chatter dropped, log messages held back."""

    def __init__(self, stream):
        self.stream = stream
        self.held: List[str] = []
        self.dropped = 0
        self.holding = False
        self._part = b""

    def feed(self, data: bytes) -> None:
        self._part += data
        *lines, self._part = self._part.split(b"\n")
        for raw in lines:
            self.line(raw.decode(errors="replace"))

    def line(self, s: str) -> None:
        if _CHATTER.match(s):
            return
        if _GLOG.match(s):
            self.holding = True
        if not self.holding:
            self.stream.write(s + "\n")
            self.stream.flush()
            return
        self.held.append(s)
        if len(self.held) > KEEP_LINES:
            del self.held[KEEP_LINES // 4]
            self.dropped += 1

    def close(self) -> None:
        if self._part:
            self.line(self._part.decode(errors="replace"))
            self._part = b""

    def text(self) -> str:
        return "\n".join(self.held)

    def flush_held(self) -> None:
        if self.dropped:
            self.held.insert(KEEP_LINES // 4, f"[... {self.dropped} native log lines not shown ...]")
        for s in self.held:
            self.stream.write(s + "\n")
        self.stream.flush()
        self.held = []


def supervise(cmd: Sequence[str], run_dir, timeout_s: float, prog: str = "scaleinv train",
              env=None) -> int:
    """Run the trainer ``cmd`` as a supervised child (module docstring); its exit code, or
    :data:`EXIT_PEER` after one line when a peer died or never joined."""
    env = dict(os.environ if env is None else env)
    addr = env.get("JAX_COORDINATOR_ADDRESS", "").strip()
    pid_raw, n_raw = env.get("JAX_PROCESS_ID", "").strip(), env.get("JAX_NUM_PROCESSES", "").strip()
    process_id = int(pid_raw) if pid_raw.isdigit() else 0
    n = int(n_raw) if n_raw.isdigit() else None
    run_dir = Path(run_dir)
    sys.stdout.flush()
    sys.stderr.flush()
    out_fd, err_fd = os.dup(_fileno(sys.stdout, 1)), os.dup(_fileno(sys.stderr, 2))
    ctl_r, ctl_w = os.pipe()
    env[CHILD_ENV] = f"{out_fd},{err_fd},{ctl_w}"
    env[TIMEOUT_ENV] = repr(float(timeout_s))
    child = subprocess.Popen(list(cmd), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, pass_fds=(out_fd, err_fd, ctl_w),
                             start_new_session=True, preexec_fn=_pdeathsig)
    for fd in (out_fd, err_fd, ctl_w):
        os.close(fd)
    native = _Native(sys.stderr)
    sel = selectors.DefaultSelector()
    sel.register(child.stdout, selectors.EVENT_READ, "native")
    ctl = os.fdopen(ctl_r, "rb", buffering=0)
    sel.register(ctl, selectors.EVENT_READ, "control")
    ctl_part = b""
    state = {"connecting": None, "joined": False, "collective": None, "verdict_by": None,
             "forward": None, "child_signalled": False, "peer": None}

    def on_signal(signum, frame):
        if state["forward"] is not None or state["child_signalled"]:
            _kill(child, signum)            # a second signal: straight through
            state["forward"] = None
        else:
            state["forward"] = (signum, time.monotonic() + FORWARD_DELAY_S)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    open_streams = 2
    try:
        while open_streams or child.poll() is None:
            now = time.monotonic()
            deadlines = [d for d in (state["verdict_by"],
                                     state["connecting"] + timeout_s if state["connecting"] is not None
                                     and not state["joined"] else None,
                                     state["forward"][1] if state["forward"] else None) if d is not None]
            wait = max(0.0, min(deadlines) - now) if deadlines else 1.0
            for key, _ in sel.select(timeout=min(wait, 1.0)):
                data = os.read(key.fileobj.fileno(), 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                if key.data == "native":
                    native.feed(data)
                    continue
                ctl_part += data
                *msgs, ctl_part = ctl_part.split(b"\n")
                for m in msgs:
                    word, _, rest = m.decode(errors="replace").partition(" ")
                    if word == "connecting":
                        state["connecting"] = time.monotonic()
                    elif word == "joined":
                        state["joined"] = True
                    elif word == "signal":
                        state["child_signalled"], state["forward"] = True, None
                    elif word == "collective" and state["collective"] is None:
                        state["collective"] = rest
                        if n == 2:
                            state["peer"] = _procs([1 - process_id], n) + f" is gone (a collective failed: {rest})"
                            _kill(child, signal.SIGKILL)
                        else:
                            state["verdict_by"] = time.monotonic() + timeout_s
            now = time.monotonic()
            if state["forward"] and now >= state["forward"][1]:
                _kill(child, state["forward"][0])
                state["forward"] = None
            if state["connecting"] is not None and not state["joined"] and state["peer"] is None \
                    and now >= state["connecting"] + timeout_s and child.poll() is None:
                state["peer"] = _never_joined(process_id, n, addr) + f" within --peer-timeout {timeout_s:g} s"
                _kill(child, signal.SIGKILL)
            if state["verdict_by"] is not None and now >= state["verdict_by"] and child.poll() is None:
                state["peer"] = f"a peer is gone (a collective failed: {state['collective']}; no heartbeat verdict " \
                                f"within --peer-timeout {timeout_s:g} s)"
                _kill(child, signal.SIGKILL)
        rc = child.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sel.close()
        ctl.close()
        if child.poll() is None:
            _kill(child, signal.SIGKILL)
            child.wait()
    native.close()
    peer = state["peer"]
    if peer is None and rc not in (0, 2, 3, 4, 5, EXIT_PEER, 130, 143):
        peer = diagnose(native.text(), process_id, n)
        if peer is not None and not state["joined"] and "joined" in peer:
            peer = _never_joined(process_id, n, addr) + f" within --peer-timeout {timeout_s:g} s"
    if peer is None:
        native.flush_held()
        return rc if rc >= 0 else 128 - rc
    cleaned = _cleanup(run_dir, child.pid, process_id)
    tail = ("; " + ", ".join(cleaned)) if cleaned else ""
    good = _last_good(run_dir)
    how = "rerun every process with --resume to continue from it" if good != "none" else "nothing to resume"
    print(f"{prog}: error: peers: {peer}; process {process_id} stopped; the last good checkpoint is {good} "
          f"({how}){tail}; exit {EXIT_PEER}", file=sys.stderr, flush=True)
    return EXIT_PEER


def _fileno(stream, default: int) -> int:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):   # a captured stream (tests): the process's own
        return default


def _kill(child: subprocess.Popen, signum: int) -> None:
    try:
        child.send_signal(signum)
    except (ProcessLookupError, OSError):
        pass
