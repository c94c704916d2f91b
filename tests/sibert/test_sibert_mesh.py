"""Data-parallel / FSDP training over an 8-device host mesh gives the same losses as 1 device.

XLA_FLAGS=--xla_force_host_platform_device_count=8 only acts before JAX initialises, so every
configuration runs in its own subprocess."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _sibert_helpers import fast_compile, tiny_overrides  # noqa: E402

from sibert.devices import fake_cpu_devices_env  # noqa: E402

SCRIPT = """
import json, sys
import jax
from sibert.config import apply_overrides, preset
from sibert.train import train
model, out, overs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
res = []
for i, over in enumerate(overs):
    s = train(apply_overrides(preset("tiny", model), over), f"{out}/{i}", log=lambda s: None)
    losses = [json.loads(l)["loss"] for l in open(f"{out}/{i}/metrics.jsonl")]
    res.append({"devices": s["devices"], "n_jax": jax.device_count(), "losses": losses,
                "heldout": s["final_eval"]["heldout_loss"]})
print(json.dumps(res))
"""


def _run(tmp_path, name, ndev, model, variants):
    # fake devices with XLA's CPU collective timeouts raised (the default 40 s rendezvous
    # timeout aborted this test on a loaded 2-core machine) but well below the subprocess timeout:
    # a tiny step's collective never waits minutes, so a deadlock (as once in the trainer's
    # summary, see sibert.train._jit_tree_norm) aborts with XLA's rendezvous message in 5 min
    # instead of hanging until the timeout
    env = fast_compile(fake_cpu_devices_env(ndev, timeout_s=300))   # every run: same XLA flags
    overs = [tiny_overrides(tmp_path / "cache", steps=8, eval_every=8, ckpt_every=8, **kw) for kw in variants]
    r = subprocess.run([sys.executable, "-c", SCRIPT, model, str(tmp_path / name), json.dumps(overs)],
                       env=env, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(3000)  # three subprocesses; generous for a loaded 2-core machine
@pytest.mark.parametrize("model", ["sibert", "bert"])
def test_eight_devices_match_one_device(tmp_path, model):
    (one,) = _run(tmp_path, "one", 1, model, [{}])
    dp, fsdp = _run(tmp_path, "eight", 8, model, [{}, {"fsdp": True}])
    assert one["devices"] == 1 and dp["devices"] == 8 and fsdp["devices"] == 8 and dp["n_jax"] == 8
    # same computation, different reduction order: float32 tolerance
    np.testing.assert_allclose(dp["losses"], one["losses"], rtol=2e-5)
    np.testing.assert_allclose(fsdp["losses"], one["losses"], rtol=2e-5)
    np.testing.assert_allclose([dp["heldout"], fsdp["heldout"]], one["heldout"], rtol=2e-5)
    assert len(one["losses"]) == 8 and len(set(np.round(one["losses"], 4))) > 1


def test_fake_device_env_raises_collective_timeouts_and_keeps_other_flags():
    env = fake_cpu_devices_env(4, base={"XLA_FLAGS": "--xla_force_host_platform_device_count=2 --foo=1"})
    flags = env["XLA_FLAGS"].split()
    assert "--foo=1" in flags and "--xla_force_host_platform_device_count=4" in flags
    assert "--xla_force_host_platform_device_count=2" not in flags
    timeouts = [f for f in flags if "collective" in f]
    assert len(timeouts) == 3 and all(int(f.split("=")[1]) >= 600 for f in timeouts)
    assert env["JAX_PLATFORMS"] == "cpu"
