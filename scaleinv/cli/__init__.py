"""The ``scaleinv`` console script: ``scaleinv verify | proofs | train | prepare-data | plot | bench | audit | figures | card | export``.

One module per subcommand, each exposing ``add_arguments(parser)`` and ``run(args) -> int``:
``verify`` (toyproblems claims), ``proofs`` (proofs_check), ``train`` / ``prepare-data`` / ``plot`` / ``export``
(sibert), ``bench`` (benchmarks), ``audit`` (scaleinv.audit), ``figures`` (notebooks), ``card``
(toyproblems.card). This
package is the console layer, the only code that names the wings; this module only dispatches
(heavy imports happen inside each ``run``, so that ``scaleinv proofs`` does not pay for JAX
start-up and ``train`` never sees the toy runners' float64 mode).

Errors (every command): bad input is reported as one line ``scaleinv <command>: error: ...``
on stderr with exit code 2 and nothing written (:mod:`scaleinv.usage`): malformed flags by the
parser, everything else by a command raising :class:`scaleinv.usage.UsageError` (or
``SystemExit`` with a message) before it writes anything.
"""
from __future__ import annotations

import importlib
import sys

from scaleinv.usage import EXIT_USAGE, OneLineParser, UsageError

SUBCOMMANDS = {
    "verify": ("scaleinv.cli.verify", "run every toy-model claim of the talk and print pass/fail"),
    "proofs": ("scaleinv.cli.proofs", "sympy derivations of every formula in the talk, with errata"),
    "train": ("scaleinv.cli.train", "train SIBERT or the BERT baseline (MLM) on real text"),
    "prepare-data": ("scaleinv.cli.prepare_data", "tokenise a corpus once into token shards for `train --set data_dir=`"),
    "plot": ("scaleinv.cli.plot", "plot a training run directory (loss, norm, clip rate)"),
    "bench": ("scaleinv.cli.bench", "speed/memory benchmarks as ratios against peers"),
    "audit": ("scaleinv.cli.audit", "homogeneity audit of a JAX/flax or PyTorch model"),
    "figures": ("scaleinv.cli.figures", "execute the notebooks and regenerate notebooks/figures/*.png"),
    "card": ("scaleinv.cli.card", "optimizer report card: equilibrium, timescale, invariances, MF toys vs the registry's predictions"),
    "export": ("scaleinv.cli.export", "export a training run (BERT: BertForMaskedLM; SIBERT: flax / scaleinv.torch.sibert) + tokenizer + model card"),
}


def build_parser():
    from scaleinv import __version__

    parser = OneLineParser(prog="scaleinv", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"scaleinv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}",
                                parser_class=OneLineParser)
    available = {}
    for name, (module, help_) in SUBCOMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_, description=help_)
        mod.add_arguments(p)
        available[name] = mod
    return parser, available


def _one_line(command: str, msg) -> int:
    msg = " ".join(str(msg).split())   # one line, whatever the message
    prefix = f"scaleinv {command}: error: " if command else "scaleinv: error: "
    print(msg if msg.startswith(prefix) else prefix + msg.removeprefix("error: "), file=sys.stderr)
    return EXIT_USAGE


def main(argv=None) -> int:
    from scaleinv.compile_cache import enable

    enable()   # JAX persistent compilation cache (SCALEINV_COMPILE_CACHE=0 turns it off)
    parser, available = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as e:          # --help (0) or a parser error already printed (2)
        return e.code if isinstance(e.code, int) else _one_line("", e.code)
    if extra:                        # reported by the command's parser, not the top-level one
        return _one_line(getattr(args, "command", None) or "", f"unrecognized arguments: {' '.join(extra)} "
                         f"(see scaleinv {getattr(args, 'command', None) or ''} --help)".replace("  ", " "))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    args.argv = list(sys.argv[1:] if argv is None else argv)   # the command as given (a supervised child reruns it)
    try:
        return int(available[args.command].run(args) or 0)
    except UsageError as e:
        return _one_line(args.command, e)
    except SystemExit as e:          # legacy: SystemExit("message") from a command
        if isinstance(e.code, int) or e.code is None:
            raise
        return _one_line(args.command, e.code)

