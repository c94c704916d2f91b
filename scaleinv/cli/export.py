"""``scaleinv export RUN_DIR --to hf OUT_DIR``: a training run as a Hugging Face checkpoint.

    scaleinv export runs/bert --to hf exported/bert      # BertForMaskedLM + BertTokenizerFast files
    scaleinv export runs/si --to hf exported/si --step 1000

BERT: ``config.json`` + ``model.safetensors`` that ``BertForMaskedLM.from_pretrained`` loads with
our logits, and tokenizer files for ``BertTokenizerFast.from_pretrained``. SIBERT: weights
(``sibert_model.safetensors``, flax names) + config (``model_type = "sibert"``) + tokenizer,
loadable with ``sibert.export.load_export`` (flax) or
``scaleinv.torch.sibert.SIBERTForMaskedLM.from_pretrained`` (PyTorch); transformers' own classes
refuse it. Both get a model card (OUT_DIR/README.md: recipe, held-out loss, loading). Only
committed checkpoints whose parameter tree matches the run's config are exported. Reads only
RUN_DIR (config.json, tokenizer.json, checkpoints/, eval.jsonl, summary.json); see :mod:`sibert.export`.
Exit codes: 0 done, 2 bad input (one line ``scaleinv export: error: ...``, nothing written).
"""
from __future__ import annotations

import json
import sys

FORMATS = ("hf",)


def _err(msg: str) -> int:
    print(f"scaleinv export: error: {msg}", file=sys.stderr)
    return 2


def add_arguments(p):
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `scaleinv train`")
    p.add_argument("--to", nargs=2, metavar=("FORMAT", "OUT_DIR"), required=True,
                   help="export format (hf) and a new output directory")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest; it must be committed)")

    def error(message):  # one line, exit 2 (argparse would print the usage too)
        sys.exit(_err(message))

    p.error = error


def run(args) -> int:
    fmt, out_dir = args.to
    if fmt not in FORMATS:
        return _err(f"--to: unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    from sibert.export import ExportError, export_hf
    from sibert.runs import RunError

    try:
        summary = export_hf(args.run_dir, out_dir, args.step)
    except (ExportError, RunError) as e:
        return _err(str(e))
    print(json.dumps(summary))
    return 0
