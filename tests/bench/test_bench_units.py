"""Unit checks of the benchmark pieces whose numbers the tables rely on."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def test_numpy_peer_matches_jax_trace():
    """The NumPy peer implements the same update: its trace equals the JAX run (float64)."""
    import jax
    import jax.numpy as jnp

    from benchmarks.toy_sweep import ETA, WD, numpy_nmf_gd_wd
    from scaleinv.optim import sgd_wd
    from toyproblems.problems import normalized_mf
    from toyproblems.run import run

    prob, steps = normalized_mf(), 60
    alphas = np.array([1.0, 3.0, 30.0, 1e3])
    with jax.enable_x64(True):
        p0 = jax.vmap(prob.init)(jnp.asarray(alphas))
        tr = jax.jit(jax.vmap(lambda p: run(prob.loss, sgd_wd(ETA, WD), p, steps, jax.random.PRNGKey(0))))(p0)
        A, B, t = numpy_nmf_gd_wd(np.asarray(p0["A"]), np.asarray(p0["B"]), steps)
    for k in ("loss", "sq_norm", "grad_norm", "angle"):
        np.testing.assert_allclose(t[k], np.asarray(getattr(tr, k)), rtol=1e-9, atol=1e-14, err_msg=k)
    np.testing.assert_allclose(A, np.asarray(tr.final["A"]), rtol=1e-9)


def test_optimizer_state_bytes_exact():
    """AdamW keeps 2 moments (2P bytes + an int32 count); SGD+WD+RGC keeps only the clip scalars."""
    import jax
    import optax

    from benchmarks.memory import tree_bytes
    from scaleinv.optim import sgd_wd_rgc

    params = {"a": jax.ShapeDtypeStruct((300, 7), np.float32), "b": jax.ShapeDtypeStruct((11,), np.float32)}
    P = tree_bytes(params)
    assert P == 4 * (2100 + 11)
    assert tree_bytes(jax.eval_shape(optax.adamw(1e-3).init, params)) == 2 * P + 4
    # count int32 + clipped bool + grad_norm, threshold float32 + num_clipped int32 = 17 bytes
    assert tree_bytes(jax.eval_shape(sgd_wd_rgc(0.1, 0.01).init, params)) == 4 + 1 + 2 * 4 + 4


def test_model_flops_formula_close_to_xla_count():
    """The MFU numerator (matmul FLOPs, 3x forward) vs XLA's cost analysis of fwd+bwd (which also
    counts elementwise work): within 10% at the smoke-test sizes."""
    from benchmarks.scaling import model_flops_per_token, xla_flops_per_token
    from benchmarks.sibert_bench import bench_config

    cfg = bench_config("tiny", True)
    f, x = model_flops_per_token(cfg), xla_flops_per_token(cfg)
    assert x is not None and abs(f / x - 1) < 0.10, (f, x)


def test_peer_rows_with_and_without_peer():
    from benchmarks.sibert_bench import peer_rows

    tps = {"sibert": 200.0, "hf_masked": 100.0, "hf_full": 50.0}
    rows = peer_rows("tiny", "shape", "ours", tps, False, {"threads": 1}, {}, {})
    assert [r.id for r in rows] == ["B3.tiny.hf", "B3.tiny.hf_fullhead"]
    assert rows[0].ratio == 2.0 and rows[0].status == "met" and rows[1].ratio == 4.0
    assert peer_rows("tiny", "s", "o", {"sibert": 50.0, "hf_masked": 100.0, "hf_full": 1.0}, False, {}, {}, {})[0].status == "missed"
    missing = peer_rows("tiny", "shape", "ours", {"sibert": 200.0}, False, {}, {}, {})
    assert all(r.status == "peer not installed" and r.ratio is None for r in missing)


def test_hidden_torch_counts_as_not_installed(tmp_path):
    """A torch that fails to import makes the peer 'not installed' (not a crash)."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('hidden for the test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    out = subprocess.run([sys.executable, "-c", "from benchmarks import hf_peer; print(hf_peer.available())"],
                         capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_compare_median_and_validation():
    from benchmarks.timing import compare

    calls = {"n": 0}

    def f():
        calls["n"] += 1
        return calls["n"]

    res = compare({"f": f}, repeats=5, warmup=2, inner=3)
    assert calls["n"] == 2 + 5 * 3 and len(res["f"]["times_s"]) == 5
    assert res["f"]["min_s"] <= res["f"]["median_s"] and math.isfinite(res["f"]["median_s"])
    with pytest.raises(ValueError, match="repeats must be >= 5"):
        compare({"f": f}, repeats=4)


def test_bench_rows_and_cli_errors(capsys):
    from benchmarks.rows import BenchRow, judged
    from scaleinv.cli import main

    with pytest.raises(ValueError, match="status must be one of"):
        BenchRow("x", "i", "o", "p", 1.0, 1.0, "s", 1.0, "m", status="ok")
    assert judged(1.04, upper=1.05) == "met" and judged(1.06, upper=1.05) == "missed"
    assert judged(float("nan"), 1.0) == "missed"
    assert main(["bench", "--only", "gpu"]) == 2
    assert re.search(r"^scaleinv bench: error: --only: unknown item.*'gpu'.*allowed: toy, clip", capsys.readouterr().err)
    assert main(["bench", "--only", "memory", "--repeats", "3"]) == 2
    assert "--repeats: must be >= 5" in capsys.readouterr().err


def test_mfu_formula_and_bert_base_flops():
    """MFU = F x tokens/s / peak; for BERT-base dims the model FLOPs/token is close to the usual
    6 N estimate (N = non-embedding params ~ 85 M -> 6N ~ 5.1e8), plus attention and the head."""
    from benchmarks.scaling import mfu, model_flops_per_token
    from benchmarks.sibert_step import tiny_config

    assert mfu(1e6, 1e3, 1e10) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="peak_flops must be > 0"):
        mfu(1.0, 1.0, 0.0)
    cfg = tiny_config("base", "bert")
    D, F, n = cfg.hidden, cfg.ffn, cfg.layers
    six_n = 6 * n * (4 * D * D + 2 * D * F)
    f = model_flops_per_token(cfg)
    attn = 3 * n * 4 * cfg.seq_len * D
    M = round(cfg.mask_prob * cfg.seq_len)
    head = 3 * (M / cfg.seq_len) * (2 * D * D + 2 * D * cfg.vocab_size)
    assert f == pytest.approx(six_n + attn + head, rel=1e-12)
    assert 1.0 < f / six_n < 1.25


def test_plain_flax_peer_has_hf_shapes_and_trains():
    """The plain flax.linen BERT reference (benchmarks/flax_peer.py) has exactly HF
    BertForMaskedLM's parameters less its one-row token-type table (hidden numbers), and its
    step trains (the MLM loss on a fixed batch falls over 3 AdamW steps)."""
    from benchmarks import hf_peer
    from benchmarks.flax_peer import make_plain_flax_step
    from benchmarks.sibert_bench import bench_config
    from benchmarks.sibert_step import synthetic_batch

    cfg = bench_config("tiny", True, model="bert")
    batch = synthetic_batch(cfg)
    step, info = make_plain_flax_step(cfg, batch)
    losses = [float(step()) for _ in range(3)]
    assert losses[2] < losses[1] < losses[0], losses
    if hf_peer.available():
        assert hf_peer.make_hf_step(cfg, batch, "masked")[1]["n_params"] - info["n_params"] == cfg.hidden
