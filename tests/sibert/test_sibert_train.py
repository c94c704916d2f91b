"""Training loop: it learns, logs the per-step diagnostics consistently, and stops cleanly on NaN."""
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _sibert_helpers import tiny_overrides  # noqa: E402

from sibert.config import apply_overrides, preset
from sibert.train import checkpoint_manager, sgd_schedule, train, warmup_linear_schedule


def _read(path):
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]


@pytest.mark.timeout(900)
def test_sibert_trains_and_logs(tmp_path):
    cfg = apply_overrides(preset("tiny", "sibert"), tiny_overrides(tmp_path / "cache", steps=40, lr=1.0))
    s = train(cfg, tmp_path / "run")
    assert s["status"] == "ok" and s["steps_done"] == 40
    m = _read(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in m] == list(range(40))
    for r in m:
        # effective LR = eta_t / ||x||^2 (talk: "effective LR"), to float32 rounding
        assert r["lr_eff"] == pytest.approx(r["lr"] / r["x_norm"] ** 2, rel=1e-5)
        assert 0 <= r["angular_update"] < np.pi and isinstance(r["clipped"], bool)
        assert r["tokens_per_s"] > 0 and 0 <= r["accuracy"] <= 1
    # LR drops /10 at 60% and 90% of 40 steps
    assert [m[s]["lr"] for s in (23, 24, 35, 36)] == pytest.approx([1.0, 0.1, 0.1, 0.01])
    ev = _read(tmp_path / "run" / "eval.jsonl")
    assert [e["step"] for e in ev] == [10, 20, 30, 40]
    # it learns: mean training loss of the last 10 steps below the first step (ln V = 5.7) by > 0.25 nats
    assert np.mean([r["loss"] for r in m[-10:]]) < m[0]["loss"] - 0.25
    assert ev[-1]["heldout_loss"] < m[0]["loss"] - 0.25


def test_schedules():
    s = sgd_schedule(2.0, 100, (0.6, 0.9))
    assert [float(s(t)) for t in (0, 59, 60, 89, 90, 99)] == pytest.approx([2, 2, 0.2, 0.2, 0.02, 0.02])
    w = warmup_linear_schedule(1.0, 100, 0.1)
    # the first warmup step already has LR lr/W (issue 14: it was 0, so step 0 changed nothing)
    assert [float(w(t)) for t in (0, 4, 9, 10, 55, 100)] == pytest.approx([0.1, 0.5, 1.0, 1.0, 0.5, 0.0])
    assert float(warmup_linear_schedule(1.0, 100, 0.0)(0)) == pytest.approx(1.0)


@pytest.mark.timeout(900)
def test_nonfinite_stops_cleanly_keeping_last_good_checkpoint(tmp_path, capsys):
    # BERT + AdamW at lr 1e3 (no warmup) blows up after a few steps
    cfg = apply_overrides(preset("tiny", "bert"), tiny_overrides(tmp_path / "cache", steps=60, lr=1e3,
                                                                  head_lr=1e3, warmup_frac=0.0, ckpt_every=2))
    logs = []
    s = train(cfg, tmp_path / "run", log=logs.append)
    assert s["status"] == "nonfinite" and s["nonfinite_step"] is not None and s["nonfinite_step"] < 60
    bad = s["nonfinite_step"]
    assert any(f"step {bad}" in l for l in logs)
    m = _read(tmp_path / "run" / "metrics.jsonl")
    assert len(m) == bad and all(np.isfinite(r["loss"]) for r in m)   # nothing logged from the bad step
    mngr = checkpoint_manager(tmp_path / "run", cfg)
    last = mngr.latest_step()
    assert last is not None and last <= bad
    import orbax.checkpoint as ocp
    restored = mngr.restore(last, args=ocp.args.Composite(state=ocp.args.StandardRestore(None)))["state"]
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(restored["params"]))
    mngr.close()


def test_wd_drops_divide_the_encoder_weight_decay_by_10_at_their_steps():
    """``wd_drops``: lambda_t /10 at round(f * steps); the SGD + WD encoder update reads it (one
    step of the real encoder optimizer on a zero gradient shrinks x by exactly 1 - eta_t lambda_t),
    the predicted angle follows it, and it is refused for optimizers without coupled WD."""
    import numpy as np
    import optax as _optax
    from sibert.config import ConfigError, apply_overrides, preset, validate
    from sibert.train import make_encoder_optimizer, predicted_equilibrium_angle, wd_schedule

    sched = wd_schedule(3e-2, 100, (0.1, 0.5))
    assert [float(sched(t)) for t in (0, 9, 10, 49, 50)] == pytest.approx([3e-2, 3e-2, 3e-3, 3e-3, 3e-4])
    assert wd_schedule(3e-2, 100, ()) == 3e-2
    cfg = validate(apply_overrides(preset("tiny", "sibert", "sgd-wd"),
                                   dict(steps=100, lr=0.1, weight_decay=3e-2, lr_drops="0.5", wd_drops="0.1")))
    tx, lr = make_encoder_optimizer(cfg)
    x = {"w": jnp.ones((3,))}
    zero = {"w": jnp.zeros((3,))}
    st = tx.init(x)
    shrink = []
    for t in range(12):
        u, st = tx.update(zero, st, x)
        shrink.append(float(_optax.apply_updates(x, u)["w"][0]))
    np.testing.assert_allclose(shrink[:10], 1 - 0.1 * 3e-2, rtol=1e-6)
    np.testing.assert_allclose(shrink[10:], 1 - 0.1 * 3e-3, rtol=1e-6)
    assert predicted_equilibrium_angle(cfg, 0.1, 10) == pytest.approx(np.sqrt(2 * 0.1 * 3e-3))
    assert predicted_equilibrium_angle(cfg, 0.1, 9) == pytest.approx(np.sqrt(2 * 0.1 * 3e-2))
    with pytest.raises(ConfigError, match="wd_drops"):
        validate(apply_overrides(cfg, dict(optimizer="rv-sgd-wd", wd_drops="0.1")))
