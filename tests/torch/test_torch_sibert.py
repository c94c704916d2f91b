"""scaleinv.torch.sibert: the torch SIBERT equals the flax one (random weights, padded batch), its
encoder is scale invariant (scaleinv.torch.testing), the export directory loads and maps back to
the flax names exactly, and bad directories give one-line errors. The trained-run parity test on
held-out text is in tests/sibert/test_sibert_export.py (it reuses that file's trained runs)."""
import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[torch]'): torch SIBERT not checked")

from scaleinv.torch.sibert import (MODEL_TYPE, WEIGHTS, SIBERTConfig, SIBERTExportError,  # noqa: E402
                                   SIBERTForMaskedLM, load_tokenizer)
from scaleinv.torch.testing import assert_homogeneous, assert_scale_invariant_loss  # noqa: E402
from sibert.export import SIBERT_MODEL_TYPE, SIBERT_WEIGHTS  # noqa: E402
from sibert.hf import flatten_params  # noqa: E402
from sibert.model import MLMModel, ModelConfig, init_params  # noqa: E402

TOL = 1e-5
MCFG = ModelConfig(vocab_size=97, hidden=32, layers=2, heads=4, ffn=64, max_positions=20)


def _perturbed_params(mcfg, seed=0):
    """init params + 0.2 N(0, 1) on every leaf (non-zero biases, LN gains != 1), logit_scale 10."""
    params = init_params(mcfg, jax.random.PRNGKey(seed), seq_len=mcfg.max_positions)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    params = jax.tree.unflatten(tree, [x + 0.2 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    params["head"]["logit_scale"] = jnp.asarray(10.0, jnp.float32)   # logits of a trained model's size (~5)
    return params


def _write_export(d, mcfg, params):
    """The two files the torch loader reads, as `scaleinv export` writes them for SIBERT."""
    from safetensors.numpy import save_file
    d.mkdir(parents=True)
    save_file(flatten_params(params), str(d / SIBERT_WEIGHTS), metadata={"format": "flax", "model": "sibert"})
    (d / "config.json").write_text(json.dumps({"model_type": SIBERT_MODEL_TYPE, "architectures": ["SIBERTForMaskedLM"],
                                               "weights": SIBERT_WEIGHTS,
                                               "sibert_model_config": dataclasses.asdict(mcfg)}))
    return d


def _padded_batch(mcfg, B=4, seed=0):
    rng = np.random.default_rng(seed)
    L = mcfg.max_positions
    lengths = np.array([L, 13, 5, 1][:B])
    mask = (np.arange(L)[None] < lengths[:, None]).astype(np.int32)
    ids = np.where(mask == 1, rng.integers(5, mcfg.vocab_size, (B, L)), 0).astype(np.int32)
    return ids, mask


def _flax_logits(mcfg, params, ids, mask):
    B, L = ids.shape
    pos = jnp.tile(jnp.arange(L, dtype=jnp.int32)[None], (B, 1))
    return np.asarray(MLMModel(mcfg).apply({"params": params}, jnp.asarray(ids), pos,
                                           attention_mask=jnp.asarray(mask)))


def _torch_logits(model, ids, mask):
    with torch.no_grad():
        return model(torch.as_tensor(ids).long(), attention_mask=torch.as_tensor(mask)).logits.numpy()


def test_constants_match_the_exporter():
    assert (WEIGHTS, MODEL_TYPE) == (SIBERT_WEIGHTS, SIBERT_MODEL_TYPE)


def test_parameter_names_and_shapes_are_the_flax_models():
    model = SIBERTForMaskedLM(SIBERTConfig.from_dict(dataclasses.asdict(MCFG)))
    ours = {k: v.shape for k, v in model.flax_state_dict().items()}
    flax = {k: v.shape for k, v in flatten_params(init_params(MCFG, jax.random.PRNGKey(0), 4)).items()}
    assert ours == flax
    assert ours["head/logit_scale"] == ()


def test_logits_equal_flax_random_weights_padded(tmp_path):
    params = _perturbed_params(MCFG)
    model = SIBERTForMaskedLM.from_pretrained(_write_export(tmp_path / "e", MCFG, params))
    assert not model.training
    # back to the flax names: exactly the exported tensors
    for k, v in flatten_params(params).items():
        got = model.flax_state_dict()[k]
        assert got.shape == v.shape and got.dtype == v.dtype and np.array_equal(got, v), k
    ids, mask = _padded_batch(MCFG)
    ours, theirs = _torch_logits(model, ids, mask), _flax_logits(MCFG, params, ids, mask)
    real = mask.astype(bool)
    diff = float(np.max(np.abs(ours - theirs)[real]))
    print(f"max |logit diff| torch SIBERT vs flax, random weights, padded: {diff:.2e} "
          f"(logit scale {np.abs(theirs).max():.1f})")
    assert diff <= TOL
    # padding: the ids at padded positions change nothing at real positions
    ids2 = np.where(mask == 1, ids, 7)
    assert np.array_equal(_torch_logits(model, ids2, mask)[real], ours[real])
    # mlm_positions gathers the same rows; labels give the mean cross-entropy
    pos = torch.tensor([[0, 3], [1, 12], [0, 4], [0, 0]])
    with torch.no_grad():
        out = model(torch.as_tensor(ids).long(), attention_mask=torch.as_tensor(mask), mlm_positions=pos,
                    labels=torch.tensor([[5, -100], [6, 7], [8, 9], [10, -100]]))
    np.testing.assert_allclose(out.logits.numpy(), np.take_along_axis(ours, pos.numpy()[..., None], 1), atol=1e-5)
    lp = torch.log_softmax(out.logits, -1)
    want = -(lp[0, 0, 5] + lp[1, 0, 6] + lp[1, 1, 7] + lp[2, 0, 8] + lp[2, 1, 9] + lp[3, 0, 10]) / 6
    assert abs(float(out.loss) - float(want)) < 1e-5
    # the comparison can fail: a logit scale off by 1e-3 (relative) is outside the tolerance
    with torch.no_grad():
        model.head.logit_scale.mul_(1.001)
    assert float(np.max(np.abs(_torch_logits(model, ids, mask) - theirs)[real])) > 10 * TOL


def test_encoder_is_scale_invariant():
    """The loss is 0-homogeneous in encoder.* (value, Euler, gradient) and so is the encoder's output;
    the head is not (the check can fail)."""
    torch.manual_seed(0)
    cfg = SIBERTConfig(vocab_size=41, hidden=16, layers=2, heads=2, ffn=32, max_positions=12)
    model = SIBERTForMaskedLM(cfg).double()
    ids, mask = _padded_batch(dataclasses.replace(MCFG, vocab_size=41, max_positions=12))
    ids, mask = torch.as_tensor(ids).long(), torch.as_tensor(mask)
    labels = torch.where(mask == 1, (ids * 7) % 41, torch.full_like(ids, -100))

    def loss(p):
        return torch.func.functional_call(model, p, (ids,), {"attention_mask": mask, "labels": labels}).loss

    params = {k: v.detach() for k, v in model.named_parameters()}
    assert_scale_invariant_loss(loss, "encoder", params=params)
    assert_homogeneous(model.encoder, 0, inputs=(ids, mask))
    with pytest.raises(AssertionError):
        assert_homogeneous(loss, 0, "head", params=params)


def test_bad_directories_one_line_errors(tmp_path):
    params = _perturbed_params(MCFG)
    good = _write_export(tmp_path / "good", MCFG, params)

    def bad(mutate, match):
        d = tmp_path / f"bad{len(list(tmp_path.iterdir()))}"
        shutil.copytree(good, d)
        mutate(d)
        with pytest.raises(SIBERTExportError, match=match) as e:
            SIBERTForMaskedLM.from_pretrained(d)
        assert "\n" not in str(e.value), str(e.value)
        return str(e.value)

    def set_config(**kw):
        def f(d):
            c = json.loads((d / "config.json").read_text())
            c.update(kw)
            (d / "config.json").write_text(json.dumps(c))
        return f

    def width(d):
        c = json.loads((d / "config.json").read_text())
        c["sibert_model_config"]["hidden"] = 64
        (d / "config.json").write_text(json.dumps(c))

    w = good / WEIGHTS
    assert "BertForMaskedLM" in bad(set_config(model_type="bert"), "model_type 'bert'")
    bad(set_config(model_type=None), "not a SIBERT export")
    bad(lambda d: (d / WEIGHTS).write_bytes(w.read_bytes()[: w.stat().st_size // 2]), "cannot be read")
    bad(lambda d: (d / WEIGHTS).write_bytes(b"not safetensors"), "cannot be read")
    bad(lambda d: (d / WEIGHTS).unlink(), f"has no {WEIGHTS}")
    bad(lambda d: (d / "config.json").unlink(), "has no config.json")
    bad(lambda d: (d / "config.json").write_text("{"), "not valid JSON")
    bad(width, "does not match its config")
    with pytest.raises(SIBERTExportError, match="is not a directory"):
        SIBERTForMaskedLM.from_pretrained(tmp_path / "missing")
    with pytest.raises(SIBERTExportError, match="no tokenizer.json"):
        load_tokenizer(good)
