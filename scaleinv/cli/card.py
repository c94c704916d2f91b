"""``scaleinv card OPTIMIZER``: the optimizer report card (:mod:`toyproblems.card`).

OPTIMIZER is a name of the optimizer registry (``scaleinv.registry.names()``) or a user factory
``package.module:function`` / ``path/file.py:function`` returning an optax
``GradientTransformation`` (called with no arguments, run as returned: its rows have no
prediction). ``--all`` makes the card of every registered name (and ``OUT/index.md``).

Measured on the toys (float64): the equilibrium ||x||^2 and angular update per step (per matrix,
per neuron), the slope of the time to equilibrium in ln||x(0)||^2, the ratios under L -> 10 L and
x(0) -> 10 x(0), the talk's Ex 2 and the normalized MF (steps to loss < 1e-3 against the init
scale), the optimizer state bytes per parameter; each beside the registry's prediction where it
has one, else "no prediction". Writes ``OUT/<name>.json`` (rows + meta), ``OUT/<name>.md`` and
``OUT/<name>.png`` (one figure page). A toy that raises, turns non-finite or passes its time limit
is a row with status ``failed``.

Exit status: 0 when every row with a prediction passes, 1 when one fails, 2 on bad input (one
line ``scaleinv card: error: ...``: unknown name with the allowed names, a factory that does not
import, raises, exits, does not return within ``--factory-timeout`` seconds, or returns anything
but a working GradientTransformation; an unwritable ``--out``; all checked before anything is
written). Progress: a live bar over the toys on a terminal, one line per toy otherwise.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("optimizer", nargs="?", default=None,
                   help="a registered optimizer name, or MODULE:FUNCTION returning an optax GradientTransformation")
    p.add_argument("--all", action="store_true", help="the card of every registered optimizer (+ OUT/index.md)")
    p.add_argument("--quick", action="store_true", help="fewer init scales and steps (< 2 min on 2 CPU cores)")
    p.add_argument("--out", default="results/cards", help="output directory (<name>.json / .md / .png)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed of every toy")
    p.add_argument("--factory-timeout", type=float, default=30.0,
                   help="seconds a user factory may take to return its transform (default 30)")


def run(args) -> int:
    from scaleinv import registry
    from scaleinv.usage import UsageError, check_output_dir

    if args.all == (args.optimizer is not None):
        raise UsageError("optimizer: give one optimizer (a registered name or MODULE:FUNCTION) or --all; "
                         f"allowed names: {', '.join(registry.names())}")
    if args.seed < 0 or args.seed > 2**32 - 1:
        raise UsageError(f"--seed: {args.seed} is out of range; allowed: 0..4294967295")
    if not args.factory_timeout > 0:
        raise UsageError(f"--factory-timeout: must be > 0 seconds, got {args.factory_timeout}")
    spec = args.optimizer
    is_factory = spec is not None and ":" in spec
    if spec is not None and not is_factory and spec not in registry.names():
        raise UsageError(f"optimizer: unknown value {spec!r}; allowed: {', '.join(registry.names())}, "
                         "or MODULE:FUNCTION returning an optax GradientTransformation")
    out = check_output_dir(args.out, "--out")

    from toyproblems import card as K

    if is_factory:
        try:
            subjects = [K.factory_subject(spec, K.load_factory(spec, args.factory_timeout))]
        except ValueError as e:
            raise UsageError(f"optimizer: factory {e}; allowed: a function returning an optax "
                             "GradientTransformation") from None
    else:
        subjects = [K.subject(n) for n in (registry.names() if args.all else [spec])]

    from scaleinv.progress import progress

    results = []
    with progress(len(subjects) * len(K.TOYS), "scaleinv card", unit="toy") as bar:
        for sub in subjects:
            res = K.card(sub, quick=args.quick, seed=args.seed, bar=bar)
            paths = K.write_card(res, out)
            results.append(res)
            c = {s: sum(r.status == s for r in res["rows"]) for s in K.STATUSES}
            bar.write(f"{sub.label}: {c} in {res['meta']['seconds']} s -> {paths['md']}")
    if args.all:
        print(f"index: {K.write_index(results, out)}")
    return 1 if any(r.status == "fail" for res in results for r in res["rows"]) else 0
