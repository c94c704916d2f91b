"""``scaleinv prepare-data SOURCE OUT``: tokenise a corpus once into token shards for training.

    scaleinv prepare-data wiki-offline data/wiki --vocab-size 2048
    scaleinv prepare-data corpus/ data/corpus --vocab-size 8192 --heldout-fraction 0.05
    scaleinv train --preset mini --set data_dir=data/wiki --set vocab_size=2048

SOURCE is ``wiki-offline`` (the shipped corpus) or a directory of UTF-8 ``*.txt`` files (one
document each). OUT gets the tokenizer, fixed-size int32 token shards and ``index.json``
(:mod:`sibert.shards`): the same document split and tokenizer as training from SOURCE in
memory (:mod:`sibert.data`), so ``--set data_dir=OUT`` trains on the same batches, read lazily,
each process only its rows. A progress bar on a terminal, plain lines in a log.
Exit codes: 0 done (or OUT already holds these shards), 2 bad input: one line
``scaleinv prepare-data: error: ...`` and nothing written (missing / empty / binary SOURCE,
unwritable OUT, OUT holding another tokenizer's shards or other files, --shard-tokens < 1, a
vocabulary smaller than the corpus's alphabet).
"""
from __future__ import annotations

import argparse

DEFAULT_SHARD_TOKENS = 1 << 22   # sibert.shards.DEFAULT_SHARD_TOKENS (not imported: the parser stays light)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE", help="'wiki-offline' or a directory of *.txt files")
    p.add_argument("out", metavar="OUT", help="new (or empty) output directory")
    p.add_argument("--vocab-size", type=int, default=8192, help="WordPiece vocabulary size (default 8192)")
    p.add_argument("--heldout-fraction", type=float, default=0.05,
                   help="fraction of documents held out, by hash of the document id (default 0.05)")
    p.add_argument("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS,
                   help=f"tokens per shard file (default {DEFAULT_SHARD_TOKENS:,})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar / lines")


def run(args) -> int:
    import json
    import sys

    from sibert.data import DataError
    from sibert.shards import prepare

    from scaleinv.usage import UsageError

    try:
        index = prepare(args.source, args.out, args.vocab_size, args.heldout_fraction, args.shard_tokens,
                        log=lambda s: print(s, file=sys.stderr, flush=True), progress=not args.no_progress)
    except DataError as e:
        raise UsageError(str(e)) from None
    print(json.dumps({"out": args.out, "tokenizer_vocab": index["tokenizer_vocab"],
                      **{f"{s}_tokens": index["splits"][s]["tokens"] for s in index["splits"]},
                      **{f"{s}_shards": len(index["splits"][s]["shards"]) for s in index["splits"]},
                      "seconds": index.get("seconds")}))
    return 0
