"""Kill a training run with SIGKILL mid-way (subprocess), `--resume` it, and check the resumed
run reproduces the uninterrupted run's per-step losses and held-out evaluations."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _sibert_helpers import fast_compile, set_args, tiny_overrides  # noqa: E402

STEPS = 200  # long enough that the trainer cannot finish between the step-12 checkpoint and the poll (loaded CI)


def _cmd(out, cache, resume=False):
    cmd = [sys.executable, "-m", "scaleinv.cli", "train", "--out", str(out), "--no-progress"]
    if resume:
        return cmd + ["--resume"]
    return cmd + ["--model", "sibert"] + set_args(tiny_overrides(cache, steps=STEPS, ckpt_every=12, eval_every=25))


def _losses(run):
    m = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    e = [json.loads(l) for l in (run / "eval.jsonl").read_text().splitlines() if l.strip()]
    return [r["step"] for r in m], np.array([r["loss"] for r in m]), [(r["step"], r["heldout_loss"]) for r in e]


def _ckpt_steps(run):
    d = run / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


@pytest.mark.timeout(1800)  # four trainer subprocesses; generous for a loaded machine
def test_sigkill_then_resume_reproduces_uninterrupted_run(tmp_path):
    cache = tmp_path / "cache"
    env = fast_compile({**os.environ, "JAX_PLATFORMS": "cpu"})   # every trainer here: the same XLA flags
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_cmd(full, cache), check=True, env=env, capture_output=True, timeout=600)

    proc = subprocess.Popen(_cmd(killed, cache), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    while time.time() - t0 < 600:
        if any(s >= 12 for s in _ckpt_steps(killed)) or proc.poll() is not None:
            break
        time.sleep(0.02)
    # a second trainer on the same --out while the first runs: refused, one line, exit 2, nothing touched
    # (the first is paused with SIGSTOP meanwhile: alive, holding its lock, and unable to finish)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGSTOP)
    before = sorted(p.name for p in killed.iterdir())
    r2 = subprocess.run(_cmd(killed, cache, resume=True), env=env, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 2, r2.stderr[-2000:]
    assert len(r2.stderr.strip().splitlines()) == 1 and f"in use by a running trainer (PID {proc.pid}" in r2.stderr
    assert {"metrics.jsonl", "config.json", ".lock"} <= set(before)
    assert sorted(p.name for p in killed.iterdir()) == before
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (killed / "summary.json").exists()                 # it really died mid-way
    at_kill = max(_ckpt_steps(killed))
    assert 12 <= at_kill < STEPS

    r = subprocess.run(_cmd(killed, cache, resume=True), env=env, capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert f"resumed from step {at_kill}".encode() in r.stderr or b"resumed from step" in r.stderr
    # the dead trainer's lock (kill -9 left it) was detected as stale by its PID and taken over
    assert f"took over a stale lock of PID {proc.pid}".encode() in r.stderr, r.stderr.decode()[-2000:]
    assert not (killed / ".lock").exists()
    steps_f, loss_f, ev_f = _losses(full)
    steps_k, loss_k, ev_k = _losses(killed)
    assert steps_k == steps_f == list(range(STEPS))
    np.testing.assert_allclose(loss_k, loss_f, rtol=1e-6, atol=0)
    assert [s for s, _ in ev_k] == [s for s, _ in ev_f]
    np.testing.assert_allclose([v for _, v in ev_k], [v for _, v in ev_f], rtol=1e-6)
    assert json.loads((killed / "summary.json").read_text())["steps_done"] == STEPS
