"""The ``scaleinv`` console script: ``scaleinv verify | proofs | train | plot | bench | audit | figures | export``.

Each subcommand lives in its own package and exposes ``add_arguments(parser)`` and
``run(args) -> int``; this module only dispatches (imports are lazy so that ``scaleinv proofs``
does not pay for JAX start-up, and ``train`` never sees the toy runners' float64 mode).
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "verify": ("scaleinv.cli.verify", "run every toy-model claim of the talk and print pass/fail"),
    "proofs": ("scaleinv.cli.proofs", "sympy derivations of every formula in the talk, with errata"),
    "train": ("scaleinv.cli.train", "train SIBERT or the BERT baseline (MLM) on real text"),
    "plot": ("scaleinv.cli.plot", "plot a training run directory (loss, norm, clip rate)"),
    "bench": ("scaleinv.cli.bench", "speed/memory benchmarks as ratios against peers"),
    "audit": ("scaleinv.cli.audit", "homogeneity audit of a JAX/flax or PyTorch model"),
    "figures": ("scaleinv.cli.figures", "execute the notebooks and regenerate notebooks/figures/*.png"),
    "export": ("scaleinv.cli.export", "export a training run to Hugging Face (BertForMaskedLM + tokenizer)"),
}


def build_parser():
    parser = argparse.ArgumentParser(prog="scaleinv", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    available = {}
    for name, (module, help_) in SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and (module == e.name or module.startswith(e.name + ".")):
                continue  # that subcommand's package is not part of this checkout yet

            raise
        p = sub.add_parser(name, help=help_, description=help_)
        mod.add_arguments(p)
        available[name] = mod
    return parser, available


def main(argv=None) -> int:
    from scaleinv.compile_cache import enable

    enable()   # JAX persistent compilation cache (SCALEINV_COMPILE_CACHE=0 turns it off)
    parser, available = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(available[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
