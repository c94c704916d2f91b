"""Hugging Face interop: BERT parity with ``transformers.BertForMaskedLM`` on padded batches (random
and trained weights), ``scaleinv export`` round trips (BERT via transformers, BERT and SIBERT via
``sibert.export.load_export``), tokenizer ids, self-contained run directories, bad input."""
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _sibert_helpers import SAMPLE, tiny_overrides  # noqa: E402

from scaleinv.cli import main as cli_main
from sibert.config import apply_overrides, preset
from sibert.data import encode_examples, load_documents, split_documents
from sibert.evaluate import evaluate_texts
from sibert.export import load_export
from sibert.hf import hf_bert_config, to_hf_bert
from sibert.model import MLMModel, ModelConfig, init_params
from sibert.runs import RunError, load_run
from sibert.train import train

TOL = 1e-5


def _hf():
    """(torch, transformers) or a visible skip."""
    torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[bench]'): HF parity not checked")
    transformers = pytest.importorskip(
        "transformers", reason="transformers not installed (pip install -e '.[bench]'): HF parity not checked")
    return torch, transformers


def _our_logits(mcfg, params, ids, mask):
    B, L = ids.shape
    pos = jnp.tile(jnp.arange(L, dtype=jnp.int32)[None], (B, 1))
    out = jax.jit(lambda p, i, m: MLMModel(mcfg).apply({"params": p}, i, pos, attention_mask=m))(params, ids, mask)
    return np.asarray(out)


def assert_same_params(got, want):
    """Exact tree equality: the same key paths, and per leaf the same shape, dtype and values
    (``assert_array_equal`` alone would broadcast a (1,) leaf against a 0-d one)."""
    g = jax.tree_util.tree_flatten_with_path(jax.tree.map(np.asarray, got))[0]
    w = jax.tree_util.tree_flatten_with_path(jax.tree.map(np.asarray, want))[0]
    gp, wp = [jax.tree_util.keystr(k) for k, _ in g], [jax.tree_util.keystr(k) for k, _ in w]
    assert gp == wp, (sorted(set(gp) ^ set(wp)))
    for path, (_, a), (_, b) in zip(gp, g, w):
        assert a.shape == b.shape, f"{path}: shape {a.shape} != {b.shape}"
        assert a.dtype == b.dtype, f"{path}: dtype {a.dtype} != {b.dtype}"
        assert np.array_equal(a, b), f"{path}: values differ (max |diff| {np.max(np.abs(a - b))})"


def test_assert_same_params_can_fail():
    x = {"head": {"logit_scale": np.float32(2.0) * np.ones((), np.float32)}}
    assert_same_params(x, x)
    for bad in ({"head": {"logit_scale": np.full((1,), 2.0, np.float32)}},      # the issue-31 bug
                {"head": {"logit_scale": np.full((), 2.0, np.float64)}},
                {"head": {"logit_scale": np.full((), 2.5, np.float32)}},
                {"head": {"scale": np.full((), 2.0, np.float32)}}):
        with pytest.raises(AssertionError):
            assert_same_params(bad, x)


def test_flatten_params_keeps_0d_leaves():
    from sibert.hf import flatten_params, unflatten_params
    mcfg = ModelConfig(vocab_size=50, hidden=16, layers=1, heads=2, ffn=32, max_positions=8)
    params = init_params(mcfg, jax.random.PRNGKey(0), seq_len=8)
    flat = flatten_params(params)
    assert flat["head/logit_scale"].shape == ()
    assert all(v.flags.c_contiguous for v in flat.values())
    assert_same_params(unflatten_params(flat), params)


def _hf_logits(model_dir, ids, mask):
    torch, transformers = _hf()
    m, info = transformers.BertForMaskedLM.from_pretrained(str(model_dir), output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    m.eval()
    with torch.no_grad():
        out = m(input_ids=torch.as_tensor(np.asarray(ids), dtype=torch.long),
                attention_mask=torch.as_tensor(np.asarray(mask), dtype=torch.long)).logits
    return out.numpy()


def _write_hf(dirpath, params, mcfg):
    from safetensors.numpy import save_file
    dirpath.mkdir(parents=True, exist_ok=True)
    save_file(to_hf_bert(params, mcfg), str(dirpath / "model.safetensors"), metadata={"format": "pt"})
    (dirpath / "config.json").write_text(json.dumps(hf_bert_config(mcfg)))


def test_bert_matches_hf_bert_random_weights_padded(tmp_path):
    _hf()
    mcfg = ModelConfig(vocab_size=101, hidden=32, layers=2, heads=4, ffn=64, max_positions=24, scale_invariant=False)
    params = init_params(mcfg, jax.random.PRNGKey(0), seq_len=24)
    leaves, tree = jax.tree.flatten(params)   # perturb every leaf: LN affine and biases non-trivial
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    params = jax.tree.unflatten(tree, [x + 0.2 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    rng = np.random.default_rng(0)
    lengths = np.array([24, 17, 6, 2])
    mask = (np.arange(24)[None] < lengths[:, None]).astype(np.int32)
    ids = np.where(mask == 1, rng.integers(5, 101, (4, 24)), 0).astype(np.int32)
    _write_hf(tmp_path / "hf", params, mcfg)
    ours = _our_logits(mcfg, params, jnp.asarray(ids), jnp.asarray(mask))
    theirs = _hf_logits(tmp_path / "hf", ids, mask)
    real = mask.astype(bool)
    diff = float(np.max(np.abs(ours - theirs)[real]))
    print(f"max |logit diff| vs BertForMaskedLM, random weights, padded: {diff:.2e} (logit scale {np.abs(theirs).max():.1f})")
    assert diff < TOL
    # the comparison can fail: the tanh GELU is a different model at this tolerance
    other = _our_logits(dataclasses.replace(mcfg, hidden_act="gelu_new"), params, jnp.asarray(ids), jnp.asarray(mask))
    assert float(np.max(np.abs(other - theirs)[real])) > 10 * TOL


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A short-trained BERT and SIBERT run directory (sample corpus) and their held-out texts."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for model in ("bert", "sibert"):
        cfg = apply_overrides(preset("tiny", model), tiny_overrides(root / "cache", steps=6, ckpt_every=3,
                                                                    eval_every=6, eval_batches=1))
        s = train(cfg, root / model, log=lambda *_: None)
        assert s["status"] == "ok"
        out[model] = root / model
    _, held = split_documents(load_documents(SAMPLE), 0.25)
    out["heldout"] = [t for _, t in held]
    out["cache"] = root / "cache"
    return out


def test_run_dir_is_self_contained(runs, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(runs["bert"], moved)
    cache_tok = next(runs["cache"].rglob("tokenizer.json"))
    assert (moved / "tokenizer.json").read_bytes() == cache_tok.read_bytes()
    run = load_run(moved)
    assert run.step == 6 and run.model_config == ModelConfig.from_train(run.config)
    assert load_run(moved, step=3).step == 3
    orig = load_run(runs["bert"])
    for a, b in zip(jax.tree.leaves(run.params), jax.tree.leaves(orig.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # held-out evaluation of variable-length text: padding (incl. all-padding filler rows) changes nothing
    texts = [s for t in runs["heldout"] for s in t.split(". ")][:11]
    e8 = evaluate_texts(run, texts, batch_size=8)
    e3 = evaluate_texts(run, texts, batch_size=3)
    e_long = evaluate_texts(run, texts, batch_size=8, seq_len=48) if run.config.max_positions >= 48 else None
    assert np.isfinite(e8["loss"]) and e8["num_predictions"] > 0
    assert abs(e8["loss"] - e3["loss"]) < 1e-5, (e8, e3)
    assert e_long is None or abs(e_long["loss"] - e8["loss"]) < 1e-4


@pytest.mark.parametrize("model", ["bert", "sibert"])
def test_export_roundtrip_with_sibert_loader(runs, tmp_path, model, capsys):
    out = tmp_path / "out"
    assert cli_main(["export", str(runs[model]), "--to", "hf", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 6
    run = load_run(runs[model])
    mcfg, params = load_export(out)
    assert mcfg == run.model_config
    assert_same_params(params, run.params)   # exact: names, shapes (0-d logit_scale), dtypes, values
    # the documented load path runs: MLMModel.apply accepts the loaded tree, with the run's logits
    ids = jnp.asarray(np.arange(2 * 16).reshape(2, 16) % 50 + 5, jnp.int32)
    mask = jnp.asarray((np.arange(16)[None] < np.array([[16], [9]])).astype(np.int32))
    np.testing.assert_array_equal(_our_logits(mcfg, params, ids, mask), _our_logits(mcfg, run.params, ids, mask))
    cfg = json.loads((out / "config.json").read_text())
    if model == "sibert":
        assert cfg["model_type"] == "sibert" and cfg["architectures"] == ["SIBERTForMaskedLM"]
        assert (out / "sibert_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    else:
        assert cfg["model_type"] == "bert" and cfg["hidden_act"] == "gelu"
    _check_model_card(out, runs[model], run)


def _check_model_card(out, run_dir, run):
    """README.md: the recipe of the run's config, the held-out loss of the exported step (from
    eval.jsonl), and how to load it in flax and PyTorch."""
    readme = (out / "README.md").read_text()
    cfg = run.config
    ev = [json.loads(l) for l in (run_dir / "eval.jsonl").read_text().splitlines() if l.strip()]
    ev = [r for r in ev if r["step"] == run.step]
    assert len(ev) == 1
    assert f"**{ev[0]['heldout_loss']:.4f}** nats per masked token at step {run.step}" in readme
    assert json.loads((out / "sibert_export.json").read_text())["heldout"]["heldout_loss"] == ev[0]["heldout_loss"]
    assert f"`{cfg.optimizer}`" in readme and f"lr {cfg.lr:g}" in readme
    assert f"weight_decay {cfg.weight_decay:g}" in readme and f"`{cfg.head_optimizer}`" in readme
    assert f"exported step **{run.step}** of {cfg.steps}" in readme
    assert "from sibert.export import load_export" in readme
    if run.model_config.scale_invariant:
        assert f"C {cfg.clip_C:g}" in readme and "SIBERTForMaskedLM.from_pretrained" in readme
        assert "not** a `transformers` architecture" in readme
    else:
        assert "BertForMaskedLM.from_pretrained" in readme
    # the card's code runs as written: flax, then PyTorch (torch / transformers where installed)
    import re
    flax_code, torch_code = re.findall(r"```python\n(.*?)```", readme, re.S)
    ns: dict = {}
    exec(flax_code, ns)
    assert ns["logits"].shape == (1, 4, run.model_config.vocab_size)
    try:
        import torch  # noqa: F401
        if not run.model_config.scale_invariant:
            import transformers  # noqa: F401
    except ImportError:
        print("torch / transformers not installed: the model card's PyTorch snippet was not run")
        return
    ns = {}
    exec(torch_code, ns)
    assert ns["model"] is not None and ns["tok"] is not None
    if run.model_config.scale_invariant:
        assert tuple(ns["out"].logits.shape) == (1, len(ns["enc"].ids), run.model_config.vocab_size)


def _export_err(capsys, argv):
    rc = cli_main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("scaleinv export: error: "), (rc, lines)
    print(lines[0])
    return lines[0]


def test_export_refuses_a_config_that_does_not_match_the_checkpoint(runs, tmp_path, capsys):
    out = tmp_path / "out"
    cases = {  # (run, config change): what the one-line message must name
        ("bert", "model", "sibert"): "missing: encoder/embed_proj/kernel",
        ("sibert", "model", "bert"): "unexpected: encoder/embed_proj/kernel",
        ("sibert", "hidden", 64): "shape/dtype: encoder/embed_proj/kernel (32, 32)/float32 != (64, 64)/float32",
    }
    for (model, key, value), expected in cases.items():
        run = tmp_path / f"{model}-{key}"
        shutil.copytree(runs[model], run)
        cfg = json.loads((run / "config.json").read_text())
        cfg[key] = value
        (run / "config.json").write_text(json.dumps(cfg))
        msg = _export_err(capsys, ["export", str(run), "--to", "hf", str(out)])
        assert "parameters do not match the model of" in msg and str(run / "config.json") in msg, msg
        assert expected in msg, msg
        assert not out.exists() and not list(tmp_path.glob(".out.tmp*"))


def test_export_refuses_an_uncommitted_checkpoint(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs["sibert"], run)
    (run / "checkpoints" / "6" / "commit_success.txt").unlink()
    out = tmp_path / "out"
    msg = _export_err(capsys, ["export", str(run), "--to", "hf", str(out)])
    assert "newest checkpoint 6 is not committed" in msg and "committed: 3" in msg, msg
    msg = _export_err(capsys, ["export", str(run), "--to", "hf", str(out), "--step", "6"])
    assert "checkpoint 6" in msg and "not committed" in msg and "commit marker" in msg, msg
    assert not out.exists()
    assert cli_main(["export", str(run), "--to", "hf", str(out), "--step", "3"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 3


def test_export_file_modes_follow_the_umask(runs, tmp_path, capsys):
    import os
    import stat
    old = os.umask(0o002)   # group-writable: neither the 0700/0600 of a temp dir nor the 022 default
    try:
        out = tmp_path / "shared"
        assert cli_main(["export", str(runs["sibert"]), "--to", "hf", str(out)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o775
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert len(modes) >= 8 and set(modes.values()) == {0o664}, modes


def test_sibert_export_is_refused_by_transformers_classes(runs, tmp_path):
    torch, transformers = _hf()
    out = tmp_path / "si"
    assert cli_main(["export", str(runs["sibert"]), "--to", "hf", str(out)]) == 0
    with pytest.raises(OSError, match="model.safetensors"):
        transformers.BertForMaskedLM.from_pretrained(str(out))
    with pytest.raises(ValueError, match="sibert"):
        transformers.AutoModelForMaskedLM.from_pretrained(str(out))
    # the tokenizer files are standard
    assert transformers.BertTokenizerFast.from_pretrained(str(out))("a b")["input_ids"][0] == 2


def test_load_export_bad_input_one_line(runs, tmp_path):
    from sibert.export import ExportError
    good = tmp_path / "good"
    assert cli_main(["export", str(runs["sibert"]), "--to", "hf", str(good)]) == 0

    def bad(mutate, match):
        d = tmp_path / f"bad{len(list(tmp_path.iterdir()))}"
        shutil.copytree(good, d)
        mutate(d)
        with pytest.raises(ExportError, match=match) as e:
            load_export(d)
        assert "\n" not in str(e.value)

    w = "sibert_model.safetensors"
    bad(lambda d: (d / w).write_bytes((d / w).read_bytes()[: (d / w).stat().st_size // 2]), "cannot be read")
    bad(lambda d: (d / w).unlink(), "has no sibert_model.safetensors")
    bad(lambda d: (d / "sibert_export.json").unlink(), "has no sibert_export.json")

    def other_width(d):
        info = json.loads((d / "sibert_export.json").read_text())
        info["model_config"]["hidden"] = 64
        (d / "sibert_export.json").write_text(json.dumps(info))
    bad(other_width, "does not match its model config")
    with pytest.raises(ExportError, match="is not a directory"):
        load_export(tmp_path / "missing")


def test_bert_export_loads_in_transformers_with_equal_logits_and_ids(runs, tmp_path):
    torch, transformers = _hf()
    out = tmp_path / "hf"
    assert cli_main(["export", str(runs["bert"]), "--to", "hf", str(out)]) == 0
    run = load_run(runs["bert"])
    tok = transformers.BertTokenizerFast.from_pretrained(str(out))
    # identical ids on the held-out text (without specials: the training format; with: [CLS] .. [SEP])
    for text in runs["heldout"]:
        ours = run.tokenizer.encode(text, add_special_tokens=False).ids
        assert tok(text, add_special_tokens=False)["input_ids"] == ours
        assert tok(text)["input_ids"] == [2] + ours + [3]
    sents = [s for t in runs["heldout"] for s in t.split(". ")][:6]
    enc = tok(sents, padding="max_length", truncation=True, max_length=run.config.seq_len)
    ids, mask = np.asarray(enc["input_ids"], np.int32), np.asarray(enc["attention_mask"], np.int32)
    ex_ids, ex_mask = encode_examples(run.tokenizer, sents, run.config.seq_len)
    np.testing.assert_array_equal(ids, ex_ids)
    np.testing.assert_array_equal(mask, ex_mask)
    assert mask.min() == 0  # the batch really is padded
    ours = _our_logits(run.model_config, run.params, jnp.asarray(ids), jnp.asarray(mask))
    theirs = _hf_logits(out, ids, mask)
    diff = float(np.max(np.abs(ours - theirs)[mask.astype(bool)]))
    print(f"max |logit diff| vs BertForMaskedLM, trained run, padded: {diff:.2e}")
    assert diff < TOL


def test_sibert_export_loads_in_torch_with_equal_logits(runs, tmp_path):
    """The trained SIBERT run, exported, loaded with scaleinv.torch.sibert: logits equal the flax
    model's to 1e-5 (absolute, float32) on a padded batch of held-out sentences; the tokenizer gives
    the training ids; the loaded tensors are exactly the checkpoint's."""
    torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[torch]'): torch SIBERT not checked")
    from scaleinv.torch.sibert import SIBERTForMaskedLM, load_tokenizer
    from sibert.hf import flatten_params

    out = tmp_path / "si"
    assert cli_main(["export", str(runs["sibert"]), "--to", "hf", str(out)]) == 0
    run = load_run(runs["sibert"])
    model = SIBERTForMaskedLM.from_pretrained(out)
    for k, v in flatten_params(run.params).items():
        got = model.flax_state_dict()[k]
        assert got.shape == v.shape and got.dtype == v.dtype and np.array_equal(got, v), k
    tok = load_tokenizer(out)
    sents = [s for t in runs["heldout"] for s in t.split(". ") if len(s.split()) >= 12][:8]
    sents = [" ".join(s.split()[:k]) for s, k in zip(sents, (40, 3, 12, 6, 25, 1, 9, 17))]   # lengths vary
    assert len(sents) == 8
    ids, mask = encode_examples(run.tokenizer, sents, run.config.seq_len)
    L = run.config.seq_len
    for i, s in enumerate(sents):   # [CLS] text [SEP] [PAD].., the exported tokenizer's ids
        e = tok.encode(s).ids
        if len(e) <= L:
            assert [int(t) for t in ids[i]] == e + [0] * (L - len(e))
        else:                       # truncated to [CLS] text[:L-2] [SEP]
            assert [int(t) for t in ids[i, :L - 1]] == e[:L - 1]
    assert mask.min() == 0 and mask.sum(1).min() < mask.shape[1] // 2   # really padded
    ours = _our_logits(run.model_config, run.params, jnp.asarray(ids), jnp.asarray(mask))
    with torch.no_grad():
        theirs = model(torch.as_tensor(np.asarray(ids)).long(), attention_mask=torch.as_tensor(np.asarray(mask))).logits.numpy()
    real = np.asarray(mask).astype(bool)
    diff = float(np.max(np.abs(ours - theirs)[real]))
    print(f"max |logit diff| torch SIBERT vs flax, trained run, padded held-out batch: {diff:.2e} "
          f"(logit scale {np.abs(ours[real]).max():.1f}, {int(real.sum())} real positions, "
          f"{1 - real.mean():.0%} padding)")
    assert diff <= TOL


def test_export_bad_input_one_line_exit_2_nothing_written(runs, tmp_path, capsys):
    def err(argv):
        rc = cli_main(argv)
        lines = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("scaleinv export: error: "), (rc, lines)
        return lines[0]

    out = tmp_path / "out"
    assert "--to" in err(["export", str(runs["bert"]), "--to", "onnx", str(out)])
    assert "no config.json" in err(["export", str(tmp_path), "--to", "hf", str(out)])
    assert "is not a directory" in err(["export", str(tmp_path / "missing"), "--to", "hf", str(out)])
    assert "allowed: 3, 6" in err(["export", str(runs["bert"]), "--to", "hf", str(out), "--step", "5"])
    assert "required: --to" in err(["export", str(runs["bert"])])   # parser errors: exit 2, one line
    assert not out.exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    assert "OUT_DIR" in err(["export", str(runs["bert"]), "--to", "hf", str(busy)])
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]
    no_tok = tmp_path / "no_tok"
    shutil.copytree(runs["bert"], no_tok)
    (no_tok / "tokenizer.json").unlink()
    with pytest.raises(RunError, match="tokenizer.json"):
        load_run(no_tok)
    assert "tokenizer.json" in err(["export", str(no_tok), "--to", "hf", str(out)])
    assert not out.exists() and not list(tmp_path.glob(".out.tmp*"))
