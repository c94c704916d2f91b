"""Multi-host for real: two processes on localhost joined by ``jax.distributed.initialize``
(JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, CPU collectives over gloo),
2 fake CPU devices each, launched exactly as the README shows (``scaleinv train``), train the
same steps as one process with 4 devices; the per-step losses and the held-out loss agree to
float32 tolerance."""
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _sibert_helpers import fast_compile, run_two_processes, set_args, tiny_overrides  # noqa: E402

from sibert.devices import fake_cpu_devices_env  # noqa: E402

STEPS = 6


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run):
    return [json.loads(l)["loss"] for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]


def _cmd(out, over):
    return [sys.executable, "-m", "scaleinv.cli", "train", "--out", str(out), "--no-progress"] + set_args(over)


@pytest.mark.timeout(3000)
def test_two_processes_match_one_process(tmp_path):
    over = tiny_overrides(tmp_path / "cache", steps=STEPS, eval_every=STEPS, ckpt_every=3, batch_size=8)
    one = tmp_path / "one"
    r = subprocess.run(_cmd(one, over), env=fast_compile(fake_cpu_devices_env(4)), capture_output=True, text=True, timeout=1400)
    assert r.returncode == 0, r.stderr[-3000:]
    ref = json.loads((one / "summary.json").read_text())
    assert ref["devices"] == 4 and ref["processes"] == 1

    two = tmp_path / "two"
    port = _free_port()
    outs = run_two_processes(_cmd(two, over), port)
    got = json.loads((two / "summary.json").read_text())
    assert got["devices"] == 4 and got["processes"] == 2
    losses_two, losses_one = _losses(two), _losses(one)
    assert len(losses_two) == len(losses_one) == STEPS and len(set(np.round(losses_one, 4))) > 1
    print(f"2 processes x 2 devices vs 1 x 4: max rel. loss difference "
          f"{np.max(np.abs(np.subtract(losses_two, losses_one)) / np.abs(losses_one)):.2e} over {STEPS} steps")
    np.testing.assert_allclose(losses_two, losses_one, rtol=2e-5)
    # both processes report the same held-out loss as the 1-process run
    np.testing.assert_allclose([o["heldout_loss"] for o in outs], ref["final_eval"]["heldout_loss"], rtol=2e-5)
    assert (two / "checkpoints" / str(STEPS)).is_dir() and not (two / ".lock").exists()
