"""scaleinv.torch.audit against the JAX audit: the Table-2 blocks built from torch.nn get the same
signatures (and per-trial-degree fits) as their flax twins; HF BertForMaskedLM (tiny config) is
reported not scale invariant with the same first breaking block as our BERT; a torch encoder
built with the SIBERT recipe passes; ``scaleinv audit`` runs on a torch factory."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed: the scaleinv[torch] extra (torch==2.13.0) "
                                            "is needed for the scaleinv.torch tests")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from scaleinv.audit import audit as jax_audit  # noqa: E402
from scaleinv.audit import block_signature as jax_signature  # noqa: E402
from scaleinv.audit import examples as jex  # noqa: E402
from scaleinv.torch import examples as tex  # noqa: E402
from scaleinv.torch.audit import audit, block_signature  # noqa: E402
from scaleinv.torch.testing import assert_signature  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCALES = (1e-2, 1e-1, 1.0, 1e1, 1e2)
FAST = dict(scales=SCALES, input_degrees=(0, 1, 2))
B, L, D = 2, 4, 8


def _x(seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((B, L, D)).astype(dtype)


def _tokens():
    return np.random.default_rng(0).integers(0, 11, (B, L))


def _onehot():
    return (np.eye(11)[_tokens()] * 0.7 + 0.03).astype(np.float32)


# (name, torch block, flax block, inputs as NumPy, Table-2 signature)
CASES = [
    ("input", lambda: tex.InputEmbedding(11, L, D), lambda: jex.InputEmbedding(11, L, D), lambda: (_tokens(),), "(0;1)"),
    ("adding a bias", lambda: tex.AddBias(D), lambda: jex.AddBias(), lambda: (_x(0),), "(1;1)"),
    ("LayerNorm without affine", lambda: tex.layer_norm(D, False), lambda: jex.layer_norm(False), lambda: (_x(0),), "(x;0)"),
    ("LayerNorm with affine", lambda: tex.layer_norm(D, True), lambda: jex.layer_norm(True), lambda: (_x(0),), "(x;1)"),
    ("linear", lambda: tex.Linear(D, D), lambda: jex.Linear(D), lambda: (_x(0),), "(x;x+1)"),
    ("embedding", lambda: tex.Embedding(11, D), lambda: jex.Embedding(11, D), lambda: (_onehot(),), "(x;x+1)"),
    ("2-layer feed-forward", lambda: tex.FeedForward(D, 16, D), lambda: jex.FeedForward(16, D), lambda: (_x(0),), "(0;2)"),
    ("SI attention", lambda: tex.SIAttention(D), lambda: jex.SIAttention(D), lambda: (_x(1), _x(2), _x(3)), "(x,x,x;x+2)"),
    ("encoder layer", lambda: tex.EncoderLayer(D, 16), lambda: jex.EncoderLayer(D, 16), lambda: (_x(0),), "(2;2)"),
]
BROKEN = [
    ("softmax attention", lambda: tex.SIAttention(D, softmax=True), lambda: jex.SoftmaxAttention(D), lambda: (_x(1),) * 3),
    ("GeLU feed-forward", lambda: tex.FeedForward(D, 16, D, "gelu"), lambda: jex.FeedForward(16, D, activation="gelu"),
     lambda: (_x(0),)),
    ("softplus feed-forward", lambda: tex.FeedForward(D, 16, D, "softplus"),
     lambda: jex.FeedForward(16, D, activation="softplus"), lambda: (_x(0),)),
]


def _jax_sig(make, inputs):
    block = make()
    args = tuple(jnp.asarray(a) if a.dtype.kind == "f" else jnp.asarray(a, jnp.int32) for a in inputs)
    v = block.init(jax.random.PRNGKey(7), *args)
    return jax_signature(block, v, *args, scales=SCALES, jit=False)


def _torch_sig(make, inputs, dtype=torch.float32):
    block = make().to(dtype)
    args = tuple(torch.as_tensor(a).to(dtype) if a.dtype.kind == "f" else torch.as_tensor(a) for a in inputs)
    return block_signature(block, *args, scales=SCALES)


@pytest.mark.parametrize("name,make_t,make_j,inputs,expected", CASES, ids=[c[0] for c in CASES])
def test_table2_blocks_match_the_jax_audit(name, make_t, make_j, inputs, expected):
    ts, js = _torch_sig(make_t, inputs()), _jax_sig(make_j, inputs())
    assert ts.notation() == expected == js.notation(), (name, ts.notation(), js.notation())
    assert {x: f.degree for x, f in ts.fits.items()} == {x: f.degree for x, f in js.fits.items()}
    for x in ts.valid:   # float32: within the default 1e-4, slope at the integer
        assert ts.fits[x].residual <= 1e-4 and abs(ts.fits[x].slope - ts.fits[x].degree) < 1e-4


@pytest.mark.parametrize("name,make_t,make_j,inputs", BROKEN, ids=[c[0] for c in BROKEN])
def test_non_homogeneous_blocks_match_the_jax_audit(name, make_t, make_j, inputs):
    ts, js = _torch_sig(make_t, inputs()), _jax_sig(make_j, inputs())
    assert ts.notation() == "not homogeneous" == js.notation()
    assert min(f.residual for f in ts.fits.values()) > 1e-2


def test_float64_residuals_and_assert_signature():
    for make, inputs, expected in ((lambda: tex.Linear(D, D), lambda: (_x(0, np.float64),), "(x;x+1)"),
                                   (lambda: tex.EncoderLayer(D, 16), lambda: (_x(0, np.float64),), "(2;2)")):
        sig = _torch_sig(make, inputs(), torch.float64)
        assert sig.notation() == expected
        for x in sig.valid:
            assert sig.fits[x].rtol == 1e-9 and sig.fits[x].residual < 1e-11, sig.fits[x]
    assert_signature(tex.Linear(D, D), torch.as_tensor(_x(0)), expected="(x;x+1)")
    with pytest.raises(AssertionError, match="signature '\\(x;x\\+1\\)' != expected '\\(x;0\\)'"):
        assert_signature(tex.Linear(D, D), torch.as_tensor(_x(0)), expected="(x;0)")


def test_hf_bert_breaks_where_our_bert_breaks():
    pytest.importorskip("transformers", reason="transformers not installed: needed for the HF BertForMaskedLM test")
    sibert_audit = pytest.importorskip("sibert.audit_factories", reason="sibert package is part of this repo")
    model, batch, opts = tex.hf_bert(layers=2, hidden=16, ffn=32, vocab=31, seq_len=8)
    hf = audit(model, batch, **opts, depths=(1,), **FAST)
    f, p, b, o = sibert_audit.bert(layers=2, hidden=16, ffn=32, vocab=31, seq_len=8)
    ours = jax_audit(f, p, b, **o, depths=(1,), **FAST)
    # neither loss is scale invariant in the encoder group (HF: embeddings + encoder, "bert")
    assert hf.target_met is False and not hf.loss.degrees["bert"].consistent
    assert ours.target_met is False and not ours.loss.degrees["encoder"].consistent
    # the same first breaking block: layer 0's query projection, a bias added to the degree-2
    # product of the degree-1 output of the affine embedding LayerNorm
    assert ours.first_break == "encoder/layer_0/attention/query"
    assert hf.first_break == "bert.encoder.layer.0.attention.self.query", hf.summary_lines()
    for rep, ln in ((hf, "bert.embeddings.LayerNorm"), (ours, "encoder/embed_ln")):
        row = rep.row(rep.first_break)
        assert "mismatch" in row.flags and row.in_situ(rep.target_group) == "(1;✗)"
        assert "adds a bias (degree 1) to a degree-2 tensor" in rep.first_break_explanation
        assert f"its input comes from {ln}" in rep.first_break_explanation
    # and the same intrinsic breaks further on: softmax attention, GeLU, PostNorm
    flagged = {r.name: r for r in hf.breaks}
    attn = next(r for n, r in flagged.items() if n.startswith("bert.encoder.layer.0.attention.self["))
    assert "intrinsic" in attn.flags and "softmax" in attn.explanation
    assert "intrinsic" in flagged["bert.encoder.layer.0.intermediate"].flags
    assert "GeLU" in flagged["bert.encoder.layer.0.intermediate"].explanation
    assert "postnorm" in flagged["bert.encoder.layer.0.output"].flags
    assert "expect FAIL" in flagged["bert.encoder.layer.1"].flags
    assert "bert.embeddings.LayerNorm.bias" in hf.meta["randomized_zero_leaves"]


def test_sibert_recipe_torch_encoder_passes():
    model, batch, opts = tex.si_encoder()
    r = audit(model, batch, **opts, **FAST)
    assert r.first_break is None and r.target_met is True
    assert r.loss.degrees["encoder"].degree == 0 and r.loss.degrees["encoder"].residual < 1e-4
    for i in range(2):
        assert r.row(f"encoder.layers.{i}").in_situ("encoder") == "(2;2)"
        assert r.row(f"encoder.layers.{i}").signature.notation() == "(2;2)"
    assert r.row("encoder.final_ln").in_situ("encoder") == "(2;0)"
    assert r.row("encoder.proj").signature.notation() == "(x;x+1)"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "scaleinv.cli", "audit", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


def test_cli_audits_a_torch_factory(tmp_path):
    out = _cli("scaleinv.torch.examples:si_encoder", "--json", str(tmp_path / "a.json"), "--depths", "1",
               "--scales", "0.01,1,100", "--input-degrees", "0,2")
    assert out.returncode == 0, out.stderr[-3000:]
    rep = json.loads((tmp_path / "a.json").read_text())
    assert rep["meta"]["framework"] == "torch" and rep["target_met"] is True and rep["first_break"] is None
    bad = _cli("scaleinv.torch.examples:si_encoder", "--target-group", "nope", "--json", str(tmp_path / "b.json"))
    assert bad.returncode == 2 and bad.stderr.strip().startswith("scaleinv audit: error: target_group 'nope' is not a group")
    assert not (tmp_path / "b.json").exists()
