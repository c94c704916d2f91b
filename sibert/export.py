"""Export a training run directory to the Hugging Face format (``scaleinv export RUN_DIR --to hf OUT_DIR``).

BERT baseline -> a ``BertForMaskedLM`` checkpoint::

    OUT_DIR/config.json              BertConfig (:func:`sibert.hf.hf_bert_config`)
    OUT_DIR/model.safetensors        HF parameter names (:func:`sibert.hf.to_hf_bert`)
    OUT_DIR/tokenizer.json, vocab.txt, tokenizer_config.json, special_tokens_map.json
    OUT_DIR/sibert_export.json       provenance: run, step, model config

    from transformers import BertForMaskedLM, BertTokenizerFast
    model = BertForMaskedLM.from_pretrained(OUT_DIR)      # logits equal ours to float32 rounding
    tok = BertTokenizerFast.from_pretrained(OUT_DIR)      # ids equal the training ids

SIBERT -> the same files, but ``model.safetensors`` holds the flax parameter names of
:mod:`sibert.model` and ``config.json`` has ``model_type = "sibert"``: transformers has no SIBERT
class, so ``AutoModel`` refuses it; load it with ``sibert`` (:func:`load_export`), as the
``README.md`` written into OUT_DIR says. We did not write a ``trust_remote_code`` PyTorch module:
it would be a second SIBERT implementation to keep in step with the flax one.

Nothing is written unless the whole export succeeds: files go to a temporary sibling directory
that is renamed to OUT_DIR at the end; OUT_DIR must not exist or be empty.
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

__all__ = ["FORMATS", "ExportError", "export_hf", "load_export"]

FORMATS = ("hf",)
EXPORT_INFO = "sibert_export.json"

_SIBERT_README = """# SIBERT (scale-invariant BERT) exported by `scaleinv export`

This is NOT a `transformers` architecture: SIBERT uses ReLU-normalised attention, PreNorm blocks
with non-affine LayerNorm and a normalised tied decoder (Li et al., ICML 2022). Loading it needs
the `sibert` package of the scaleinv project:

```python
from sibert.export import load_export
model_config, params = load_export("{out}")   # sibert.model.ModelConfig, {{"encoder", "head"}}
```

`model.safetensors` holds the flax parameter names of `sibert.model` ("encoder/layer_0/attention/query/kernel").
The tokenizer files are standard: `BertTokenizerFast.from_pretrained(...)` loads them.
"""


class ExportError(ValueError):
    """Bad export request; the message names the argument and the allowed values."""


def _check_out_dir(out: Path):
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"OUT_DIR: {str(out)!r} exists and is not an empty directory (choose a new directory)")
    if not out.parent.exists():
        raise ExportError(f"OUT_DIR: parent directory {str(out.parent)!r} does not exist")


def export_hf(run_dir, out_dir, step: Optional[int] = None) -> dict:
    """Export ``run_dir`` (newest checkpoint, or ``step``) to ``out_dir``; returns a summary dict.

    Raises :class:`ExportError` / :class:`sibert.runs.RunError` before writing anything."""
    from safetensors.numpy import save_file

    from sibert.runs import load_run

    out = Path(out_dir).resolve()
    _check_out_dir(out)
    run = load_run(run_dir, step)
    mcfg = run.model_config
    if mcfg.scale_invariant:
        tensors = flatten_params(run.params)
        config = {"model_type": "sibert", "architectures": ["SIBERT (sibert.model.MLMModel; not a transformers class)"],
                  "sibert_model_config": dataclasses.asdict(mcfg)}
        metadata = {"format": "flax", "model": "sibert"}
    else:
        tensors = to_hf_bert(run.params, mcfg)
        config = hf_bert_config(mcfg)
        metadata = {"format": "pt"}
    info = {"run_dir": str(run.path), "step": run.step, "model": run.config.model,
            "model_config": dataclasses.asdict(mcfg), "train_config": run.config.to_dict(),
            "token_format": "pretraining rows: document stream with [SEP] between documents, no [CLS]; "
                            "the exported tokenizer adds [CLS] ... [SEP] unless add_special_tokens=False"}
    files = hf_tokenizer_files(run.tokenizer_path.read_text(), mcfg.max_positions)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    try:
        save_file(tensors, str(tmp / "model.safetensors"), metadata=metadata)
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=1))
        for name, text in files.items():
            (tmp / name).write_text(text)
        if mcfg.scale_invariant:
            (tmp / "README.md").write_text(_SIBERT_README.format(out=out))
        if out.exists():
            out.rmdir()  # checked empty above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out_dir": str(out), "model": run.config.model, "step": run.step,
            "files": sorted(p.name for p in out.iterdir()), "tensors": len(tensors)}


def load_export(out_dir):
    """(ModelConfig, params) of an export (BERT or SIBERT), for :class:`sibert.model.MLMModel`."""
    from safetensors.numpy import load_file

    from sibert.model import ModelConfig

    out = Path(out_dir)
    info = json.loads((out / EXPORT_INFO).read_text())
    mcfg = ModelConfig(**info["model_config"])
    flat = load_file(str(out / "model.safetensors"))
    params = unflatten_params(flat) if mcfg.scale_invariant else from_hf_bert(flat, mcfg)
    return mcfg, params
