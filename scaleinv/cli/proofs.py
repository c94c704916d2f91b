"""``scaleinv proofs``: print the table of derivations (stated vs derived) and the errata, optionally
write it as JSON (``--json``, rows as scaleinv.report.Row), LaTeX (``--latex``) and/or markdown
(``--markdown``). Exit 0 unless a row fails; errata are findings about the talk, not failures;
2 on bad input (one line, output paths checked before the derivations run, nothing written)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", default=None, help="write the rows (format: docs/CONVENTIONS.md) to this path")
    p.add_argument("--latex", nargs="?", const="-", default=None,
                   help="emit the table as LaTeX (to stdout, or to the given path)")
    p.add_argument("--markdown", default=None, help="write the rows as a markdown table to this path")


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    from scaleinv.usage import check_output_file, optional_check

    for flag, path in (("--json", args.json), ("--markdown", args.markdown), ("--latex", args.latex)):
        optional_check(check_output_file, path, flag)

    from proofs_check.report import all_derivations, errata_markdown, to_latex
    from scaleinv.report import print_table, to_markdown, write_json

    from proofs_check.report import TOPICS
    from scaleinv.progress import progress

    t = time.time()
    # ~20-50 s of sympy the first time: one progress unit per topic of the talk
    with progress(len(TOPICS), "scaleinv proofs", unit="topic") as bar:
        derivs = all_derivations(progress=bar)
    rows = [d.as_row() for d in derivs]
    print_table(rows, title="scaleinv proofs: every formula of the talk, derived with sympy")
    for d in derivs:
        if d.status == "fail":
            print(f"FAIL {d.id}: {d.method}")
    print("\nErrata (the talk's formula disagrees with the derivation):\n" + errata_markdown(derivs))
    meta = {"seconds": round(time.time() - t, 1), "source": "proofs_check (sympy derivations of the Li et al. ICML 2022 talk, docs/PAPER_NOTES.md)"}
    if args.json:
        write_json(rows, args.json, meta)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(to_markdown(rows))
    if args.latex:
        tex = to_latex(derivs)
        if args.latex == "-":
            print(tex)
        else:
            Path(args.latex).parent.mkdir(parents=True, exist_ok=True)
            Path(args.latex).write_text(tex)
    counts = {s: sum(r.status == s for r in rows) for s in ("pass", "erratum", "fail")}
    print(json.dumps(counts), f"({meta['seconds']} s)")
    return 1 if counts["fail"] else 0
