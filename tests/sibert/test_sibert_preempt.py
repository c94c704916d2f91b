"""Preemption and failed checkpoint writes of ``scaleinv train`` (issue 28), on trainer subprocesses.

* SIGTERM / SIGINT at a random-ish step: the trainer finishes the step in flight, writes a
  checkpoint at it, releases ``RUN/.lock``, prints ONE line and exits 143 / 130; ``--resume``
  then ends with final parameters EXACTLY equal to an uninterrupted run's (same XLA flags).
* The checkpoint directory vanishing after the first checkpoint (replaced by a file: a write
  failure even as root, where chmod does not stop writes): one line, exit 5, lock released, and
  the process exits (it used to hang in ``threading._shutdown`` on orbax's waiting threads).
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _sibert_helpers import fast_compile, set_args, tiny_overrides  # noqa: E402

STEPS = 64          # the signal lands well before the end even on a loaded machine (polled every 20 ms)
TIMEOUT = 900       # generous: 2 shared CPU cores, several trainers per test


def _cmd(out, cache, resume=False, **kw):
    cmd = [sys.executable, "-m", "scaleinv.cli", "train", "--out", str(out), "--no-progress"]
    if resume:
        return cmd + ["--resume"]
    over = dict(steps=STEPS, ckpt_every=25, eval_every=20, keep_ckpts=3)
    over.update(kw)
    return cmd + ["--model", "sibert"] + set_args(tiny_overrides(cache, **over))


def _env():
    return fast_compile({**os.environ, "JAX_PLATFORMS": "cpu"})   # every trainer here: the same XLA flags


def _metric_steps(run):
    p = run / "metrics.jsonl"
    if not p.is_file():
        return 0
    return sum(1 for l in p.read_text().splitlines() if l.endswith("}"))


def _params(run, step):
    from sibert.runs import load_run
    import jax
    return [np.asarray(x) for x in jax.tree.leaves(load_run(run, step).params)]


def _losses(run):
    return [json.loads(l)["loss"] for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = tmp_path_factory.mktemp("preempt")
    run = root / "full"
    r = subprocess.run(_cmd(run, root / "cache"), env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, run


@pytest.mark.timeout(3 * TIMEOUT)
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signal_checkpoints_exits_and_resume_is_bit_identical(full, tmp_path, sig, code):
    root, ref = full
    run = tmp_path / "run"
    at = random.Random(int(sig)).randint(5, 40)     # the step after which the signal is sent
    proc = subprocess.Popen(_cmd(run, root / "cache"), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)   # (the trainer handles SIGINT even where it was inherited ignored)
    t0 = time.time()
    while _metric_steps(run) < at and proc.poll() is None and time.time() - t0 < TIMEOUT:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=TIMEOUT)
    lines = [l for l in err.splitlines() if l.strip()]
    assert proc.returncode == code, err[-3000:]
    assert len(lines) == 1, err[-3000:]                     # one line, no traceback
    name = signal.Signals(sig).name
    assert lines[0].startswith(f"scaleinv train: stopped by {name} at step "), lines[0]
    stopped = int(lines[0].split(" at step ")[1].split(":")[0])
    assert at <= stopped < STEPS and f"checkpoint {stopped} written" in lines[0]
    assert not (run / ".lock").exists() and not (run / "summary.json").exists()
    ck = run / "checkpoints"
    assert (ck / str(stopped)).is_dir() and not [p for p in ck.iterdir() if "tmp" in p.name]
    assert _metric_steps(run) == stopped

    r = subprocess.run(_cmd(run, root / "cache", resume=True), env=_env(), capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed from step {stopped}" in r.stderr, r.stderr[-3000:]
    assert _losses(run) == _losses(ref)                     # every step, exactly
    for a, b in zip(_params(run, STEPS), _params(ref, STEPS), strict=True):
        np.testing.assert_array_equal(a, b)                 # final parameters, bit for bit
    assert json.loads((run / "summary.json").read_text())["steps_done"] == STEPS


@pytest.mark.timeout(TIMEOUT)
def test_signal_before_the_first_step_leaves_nothing(full, tmp_path):
    """SIGTERM while the trainer starts (before its first step): one line, exit 143, the run
    directory it created is removed (a rerun is never blocked)."""
    root, _ = full
    run = tmp_path / "run"
    proc = subprocess.Popen(_cmd(run, root / "cache"), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    t0 = time.time()
    while not (run / ".lock").exists() and proc.poll() is None and time.time() - t0 < TIMEOUT:
        time.sleep(0.005)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=TIMEOUT)
    lines = [l for l in err.splitlines() if l.strip()]
    assert proc.returncode == 143, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("scaleinv train: stopped by SIGTERM"), err[-3000:]
    if "before the first step" in lines[0]:
        assert not run.exists()
    else:   # the loop had started: it stopped with a checkpoint instead
        assert not (run / ".lock").exists() and "written" in lines[0]


@pytest.mark.timeout(TIMEOUT)
def test_failed_checkpoint_write_one_line_exit_5_no_hang(full, tmp_path):
    root, _ = full
    run = tmp_path / "run"
    proc = subprocess.Popen(_cmd(run, root / "cache", steps=400, ckpt_every=10, eval_every=50, keep_ckpts=100),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ck = run / "checkpoints"

    def first_checkpoint_done():
        return ck.is_dir() and any((p / "_CHECKPOINT_METADATA").is_file() for p in ck.iterdir() if p.name.isdigit()) \
            and not [p for p in ck.iterdir() if "tmp" in p.name]

    t0 = time.time()
    while not first_checkpoint_done() and proc.poll() is None and time.time() - t0 < TIMEOUT:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    os.rename(ck, run / "checkpoints.moved")     # the checkpoint folder is gone: every later save fails
    ck.write_text("not a directory\n")
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the trainer did not exit after a failed checkpoint write (hang)")
    lines = [l for l in err.splitlines() if l.strip()]
    assert proc.returncode == 5, err[-3000:]
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith("scaleinv train: error: checkpoints: a checkpoint could not be written"), lines[0]
    assert "Not a directory" in lines[0] and "lock released" in lines[0]
    assert not (run / ".lock").exists() and not (run / "summary.json").exists()


_BLOCKED = """
import os, signal, sys, time
from pathlib import Path
from sibert.preempt import StopSignals
with StopSignals(grace_s=float(sys.argv[1])) as stop:
    stop.deferred = True                       # inside the loop: the signal is only recorded ...
    stop.on_abandon(lambda: Path(sys.argv[2]).write_text("released"))
    for _ in range(int(sys.argv[3])):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    while True:                                # ... but the main thread never reaches a step boundary
        time.sleep(0.05)
"""


@pytest.mark.timeout(600)
@pytest.mark.parametrize("grace, signals, why", [(1.0, 1, "grace period of 1 s over"),
                                                  (600.0, 2, "second SIGTERM while stopping")],
                         ids=["grace-over", "second-signal"])
def test_stuck_stop_is_abandoned_with_one_line(tmp_path, grace, signals, why):
    """A main thread that cannot reach the checkpoint (stuck in XLA / orbax): after the grace
    period, or at a second signal, the abandon callbacks run (the trainer's: release the lock),
    one line, exit 143."""
    flag = tmp_path / "released"
    r = subprocess.run([sys.executable, "-c", _BLOCKED, str(grace), str(flag), str(signals)],
                       capture_output=True, text=True, timeout=300)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 143, r.stderr[-3000:]
    assert len(lines) == 1 and why in lines[0] and "abandoned" in lines[0], r.stderr[-3000:]
    assert flag.read_text() == "released"


def test_foreign_non_daemon_threads_do_not_end_the_process():
    """Only orbax's waiting threads may make the CLI end the process with os._exit: a
    non-daemon thread of the caller (a test runner's, a TensorBoard writer's) is not counted, so
    calling ``scaleinv train`` in-process never kills the host (a pytest-xdist worker was)."""
    import threading

    from sibert.checkpoints import release_orbax_threads

    gate = threading.Event()
    t = threading.Thread(target=gate.wait, name="callers-thread", daemon=False)
    t.start()
    try:
        assert release_orbax_threads(timeout_s=0.1) == []
    finally:
        gate.set()
        t.join()
