"""Reference outputs of sibert.model recorded BEFORE the precision / model-spec refactor (issue 30).

``python tests/sibert/_model_reference.py OUT.npz`` (run with the pre-refactor tree first on
PYTHONPATH: the committed ``data/model_reference.npz`` was written from main at 6c20fb9) records, for
the BERT and SIBERT presets at the test sizes, from a fixed init and from parameters drawn with
NumPy (independent of JAX's PRNG):

* the parameter tree: every path, shape, dtype and the SHA-256 of its bytes;
* logits at 5 masked positions (no mask, padding mask, dropout 0.1 with a fixed key);
* the MLM loss and the SHA-256 of every gradient leaf.

``tests/sibert/test_sibert_variants.py`` recomputes them with today's code and compares bit for bit.
"""
import hashlib
import json
import sys

import numpy as np

V, L, M = 97, 24, 5
CASES = {"sibert": dict(scale_invariant=True), "bert": dict(scale_invariant=False),
         "bert_gelu_new": dict(scale_invariant=False, hidden_act="gelu_new")}


def _cfg(name, **extra):
    from sibert.model import ModelConfig

    return ModelConfig(vocab_size=V, hidden=32, layers=2, heads=2, ffn=64, max_positions=L, **CASES[name], **extra)


def _digest(tree):
    import jax

    return {jax.tree_util.keystr(p): [list(np.shape(x)), str(np.asarray(x).dtype),
                                      hashlib.sha256(np.ascontiguousarray(np.asarray(x)).tobytes()).hexdigest()]
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def numpy_params(params, seed=0):
    """Same tree, values from NumPy's PCG64 (0.05 * standard normal; logit_scale 1): independent of
    JAX's PRNG implementation."""
    import jax

    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: np.asarray(1.0 if np.ndim(x) == 0 else 0.05 * rng.standard_normal(np.shape(x)),
                                             np.float32), params)


def cpu_fingerprint() -> str:
    """The CPU model and its vector extensions: XLA:CPU's generated code (and so the last bits of a
    float32 reduction) depends on them, so bit-for-bit comparisons hold on the same kind of CPU only."""
    import platform

    model, flags = platform.processor(), ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not model.strip(" x86_64"):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = " ".join(sorted(w for w in line.split(":", 1)[1].split() if w.startswith(("avx", "fma", "sse4"))))
                    break
    except OSError:
        pass
    return f"{platform.machine()} | {model} | {flags}"


def record(**extra):
    """{key: array} and {key: digest dict} of the cases (``extra``: more ModelConfig fields)."""
    import jax
    import jax.numpy as jnp

    from sibert.model import MLMModel, init_params, mlm_loss

    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, V, (3, L)), jnp.int32)
    pos = jnp.asarray(rng.integers(0, L, (3, M)), jnp.int32)
    amask = jnp.asarray((np.arange(L)[None] < np.array([[L], [17], [9]])).astype(np.int32))
    batch = {"tokens": tokens, "mlm_positions": pos, "mlm_labels": (pos * 3) % V,
             "mlm_weights": jnp.ones((3, M), jnp.float32)}
    arrays, digests = {}, {}
    for name in CASES:
        cfg = _cfg(name, **extra)
        model = MLMModel(cfg)
        drop = MLMModel(_cfg(name, dropout=0.1, **extra))
        init = init_params(cfg, jax.random.PRNGKey(3), seq_len=L)
        digests[f"{name}/init_params"] = _digest(init)
        for src, params in (("init", init), ("numpy", numpy_params(init))):
            k = f"{name}/{src}"
            arrays[f"{k}/logits"] = np.asarray(model.apply({"params": params}, tokens, pos))
            arrays[f"{k}/logits_masked"] = np.asarray(model.apply({"params": params}, tokens, pos, attention_mask=amask))
            arrays[f"{k}/logits_dropout"] = np.asarray(drop.apply({"params": params}, tokens, pos, deterministic=False,
                                                                  rngs={"dropout": jax.random.PRNGKey(5)}))
            loss, grads = jax.value_and_grad(lambda p: mlm_loss(model, p, batch)[0])(params)
            arrays[f"{k}/loss"] = np.asarray(loss)
            digests[f"{k}/grads"] = _digest(grads)
    return arrays, digests


if __name__ == "__main__":
    import jax
    import jaxlib

    arrays, digests = record()
    meta = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "cpu": cpu_fingerprint(), "digests": digests}
    np.savez_compressed(sys.argv[1], meta=np.asarray(json.dumps(meta)), **arrays)
    print(f"wrote {sys.argv[1]}: {len(arrays)} arrays, {len(digests)} digests (jax {jax.__version__})")
