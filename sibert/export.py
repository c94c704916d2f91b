"""Export a training run directory to the Hugging Face format (``scaleinv export RUN_DIR --to hf OUT_DIR``).

BERT baseline -> a ``BertForMaskedLM`` checkpoint::

    OUT_DIR/config.json              BertConfig (:func:`sibert.hf.hf_bert_config`)
    OUT_DIR/model.safetensors        HF parameter names (:func:`sibert.hf.to_hf_bert`)
    OUT_DIR/tokenizer.json, vocab.txt, tokenizer_config.json, special_tokens_map.json
    OUT_DIR/sibert_export.json       provenance: run, step, model config, train config
    OUT_DIR/README.md                model card (:mod:`sibert.model_card`): recipe, held-out loss, loading

    from transformers import BertForMaskedLM, BertTokenizerFast
    model = BertForMaskedLM.from_pretrained(OUT_DIR)      # logits equal ours to float32 rounding
    tok = BertTokenizerFast.from_pretrained(OUT_DIR)      # ids equal the training ids

SIBERT -> the same tokenizer / provenance / model-card files, and::

    OUT_DIR/config.json              {"model_type": "sibert", "architectures": ["SIBERTForMaskedLM"],
                                      "sibert_model_config": ModelConfig fields, ...}
    OUT_DIR/sibert_model.safetensors the flax parameter names of :mod:`sibert.model`
                                     ("encoder/layer_0/attention/query/kernel"), exact shapes and dtypes

transformers has no SIBERT class. ``AutoModel*`` refuse ``model_type = "sibert"``; the weights
are deliberately NOT called ``model.safetensors``, so ``BertForMaskedLM.from_pretrained(OUT_DIR)``
raises (``OSError: no file named model.safetensors ...``) instead of building a randomly
initialised BERT with a warning. Load SIBERT with :func:`load_export` (flax) or
``scaleinv.torch.sibert.SIBERTForMaskedLM.from_pretrained(OUT_DIR)`` (PyTorch).

Validation, before anything is written (:class:`ExportError` / :class:`sibert.runs.RunError`,
one line each; ``scaleinv export`` exits 2):

* only committed checkpoints (:func:`sibert.runs.load_run`; the newest step not committed is refused);
* the checkpoint's parameter tree (names, shapes, dtypes) must be exactly the tree of the model
  that the run's ``config.json`` describes (:func:`param_mismatch`): a config saying ``sibert``
  over a BERT checkpoint, or another width, is refused.

Nothing is written unless the whole export succeeds: files go to a temporary sibling directory
that is renamed to OUT_DIR at the end; OUT_DIR must not exist or be empty. The directory and
files get the modes of the user's umask (0777 / 0666 minus the umask), not the 0700 of a
temporary directory.

:func:`load_export` checks the export the same way: missing files, a truncated or foreign
weights file, or a tree that differs from the model config raise :class:`ExportError`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from sibert.hf import flatten_params, from_hf_bert, hf_bert_config, hf_tokenizer_files, to_hf_bert, unflatten_params

__all__ = ["FORMATS", "ExportError", "export_hf", "load_export", "expected_params", "param_mismatch",
           "EXPORT_INFO", "BERT_WEIGHTS", "SIBERT_WEIGHTS", "SIBERT_MODEL_TYPE", "SIBERT_ARCHITECTURE"]

FORMATS = ("hf",)
EXPORT_INFO = "sibert_export.json"
BERT_WEIGHTS = "model.safetensors"          # transformers' name: BertForMaskedLM loads it
SIBERT_WEIGHTS = "sibert_model.safetensors"  # not transformers' name: BertForMaskedLM refuses the dir
SIBERT_MODEL_TYPE = "sibert"
SIBERT_ARCHITECTURE = "SIBERTForMaskedLM"


class ExportError(ValueError):
    """Bad export request or export directory; the message names the argument or file."""


def _check_out_dir(out: Path):
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"OUT_DIR: {str(out)!r} exists and is not an empty directory (choose a new directory)")
    if not out.parent.exists():
        raise ExportError(f"OUT_DIR: parent directory {str(out.parent)!r} does not exist")


def expected_params(mcfg) -> dict:
    """{flat flax name: (shape, dtype name)} of :class:`sibert.model.MLMModel` for ``mcfg``
    (``jax.eval_shape`` of :func:`sibert.model.init_params`: nothing is computed)."""
    import jax

    from sibert.model import init_params

    tree = jax.eval_shape(lambda: init_params(mcfg, jax.random.PRNGKey(0), 1))
    return {k: (tuple(v.shape), str(v.dtype)) for k, v in _flat_leaves(tree).items()}


def _describe(mcfg) -> str:
    kind = "sibert" if mcfg.scale_invariant else "bert"
    return (f"{kind}: vocab {mcfg.vocab_size}, hidden {mcfg.hidden}, {mcfg.layers} layers, {mcfg.heads} heads, "
            f"ffn {mcfg.ffn}, {mcfg.max_positions} positions")


def param_mismatch(params, mcfg, limit: int = 3) -> Optional[str]:
    """None when ``params`` has exactly the names, shapes and dtypes of ``mcfg``'s model, else a
    one-line description of the first differences (missing / unexpected names, shapes)."""
    import numpy as np

    want = expected_params(mcfg)
    got = {k: (tuple(np.shape(v)), str(v.dtype if hasattr(v, "dtype") else np.asarray(v).dtype))
           for k, v in _flat_leaves(params).items()}
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    wrong = [f"{k} {got[k][0]}/{got[k][1]} != {want[k][0]}/{want[k][1]}"
             for k in sorted(set(want) & set(got)) if got[k] != want[k]]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape/dtype", wrong)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts) or None


def _flat_leaves(params, sep: str = "/") -> dict:
    """{flat name: leaf} without copying the leaves (for shape / dtype checks)."""
    out = {}

    def rec(prefix, node):
        if hasattr(node, "items"):
            for k, v in node.items():
                rec(f"{prefix}{sep}{k}" if prefix else str(k), v)
        else:
            out[prefix] = node

    rec("", params)
    return out


def _umask() -> int:
    """The process umask: Linux's /proc/self/status (read-only), else set-and-restore."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _apply_umask(root: Path):
    """The modes a plain ``mkdir`` / ``open`` would give under the user's umask."""
    mask = _umask()
    for p in root.rglob("*"):
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)
    os.chmod(root, 0o777 & ~mask)


def export_hf(run_dir, out_dir, step: Optional[int] = None) -> dict:
    """Export ``run_dir`` (newest committed checkpoint, or ``step``) to ``out_dir``; returns a summary dict.

    Raises :class:`ExportError` / :class:`sibert.runs.RunError` before writing anything."""
    from safetensors.numpy import save_file

    from sibert.model_card import model_card, run_evaluation
    from sibert.runs import load_run

    out = Path(out_dir).resolve()
    _check_out_dir(out)
    run = load_run(run_dir, step)
    mcfg = run.model_config
    problem = param_mismatch(run.params, mcfg)
    if problem:
        raise ExportError(f"RUN_DIR: checkpoint {run.step}'s parameters do not match the model of "
                          f"{run.path / 'config.json'} ({_describe(mcfg)}): {problem}")
    if mcfg.scale_invariant:
        weights = SIBERT_WEIGHTS
        tensors = flatten_params(run.params)
        config = {"model_type": SIBERT_MODEL_TYPE, "architectures": [SIBERT_ARCHITECTURE],
                  "library": "scaleinv (flax: sibert.export.load_export; PyTorch: "
                             "scaleinv.torch.sibert.SIBERTForMaskedLM.from_pretrained); not a transformers class",
                  "weights": weights, "sibert_model_config": dataclasses.asdict(mcfg)}
        metadata = {"format": "flax", "model": "sibert"}
    else:
        weights = BERT_WEIGHTS
        tensors = to_hf_bert(run.params, mcfg)
        config = hf_bert_config(mcfg)
        metadata = {"format": "pt"}
    evaluation = run_evaluation(run.path, run.step)
    info = {"run_dir": str(run.path), "step": run.step, "model": run.config.model, "weights": weights,
            "model_config": dataclasses.asdict(mcfg), "train_config": run.config.to_dict(),
            "heldout": evaluation,
            "token_format": "pretraining rows: document stream with [SEP] between documents, no [CLS]; "
                            "the exported tokenizer adds [CLS] ... [SEP] unless add_special_tokens=False"}
    files = hf_tokenizer_files(run.tokenizer_path.read_text(), mcfg.max_positions)
    card = model_card(run, evaluation, out, n_params=sum(int(v.size) for v in tensors.values()))

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    try:
        save_file(tensors, str(tmp / weights), metadata=metadata)
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=1))
        for name, text in files.items():
            (tmp / name).write_text(text)
        (tmp / "README.md").write_text(card)
        _apply_umask(tmp)
        if out.exists():
            out.rmdir()  # checked empty above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out_dir": str(out), "model": run.config.model, "step": run.step,
            "files": sorted(p.name for p in out.iterdir()), "tensors": len(tensors),
            "heldout_loss": evaluation["heldout_loss"] if evaluation else None}


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ExportError(f"EXPORT_DIR: {str(path.parent)!r} has no {path.name} ({what})")
    try:
        out = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"EXPORT_DIR: {path} is not valid JSON ({e})") from None
    if not isinstance(out, dict):
        raise ExportError(f"EXPORT_DIR: {path} is not a JSON object")
    return out


def load_export(out_dir):
    """(ModelConfig, params) of an export (BERT or SIBERT), for :class:`sibert.model.MLMModel`.

    The parameters have exactly the names, shapes and dtypes of ``MLMModel(ModelConfig)``
    (NumPy arrays); :class:`ExportError` (one line) for a missing directory or file, a truncated
    or foreign weights file, or parameters that do not match the model config."""
    from safetensors.numpy import load_file

    from sibert.model import ModelConfig

    out = Path(out_dir)
    if not out.is_dir():
        raise ExportError(f"EXPORT_DIR: {str(out)!r} is not a directory")
    info = _read_json(out / EXPORT_INFO, "not written by `scaleinv export`")
    try:
        mcfg = ModelConfig(**info["model_config"])
    except (KeyError, TypeError) as e:
        raise ExportError(f"EXPORT_DIR: {out / EXPORT_INFO} has no valid model_config ({e})") from None
    weights = info.get("weights", SIBERT_WEIGHTS if mcfg.scale_invariant else BERT_WEIGHTS)
    path = out / weights
    if not path.is_file():
        raise ExportError(f"EXPORT_DIR: {str(out)!r} has no {weights} (an incomplete export, or one written "
                          f"by an older scaleinv: export the run again)")
    try:
        flat = load_file(str(path))
    except Exception as e:  # safetensors raises SafetensorError / OSError for a damaged file
        raise ExportError(f"EXPORT_DIR: {path} cannot be read ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); truncated or not a safetensors file") from None
    try:
        params = unflatten_params(flat) if mcfg.scale_invariant else from_hf_bert(flat, mcfg)
    except (KeyError, ValueError) as e:
        raise ExportError(f"EXPORT_DIR: {path} does not hold the BERT parameters of its config ({e})") from None
    problem = param_mismatch(params, mcfg)
    if problem:
        raise ExportError(f"EXPORT_DIR: {path} does not match its model config ({_describe(mcfg)}): {problem}")
    return mcfg, params
