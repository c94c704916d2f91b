"""``scaleinv verify``: run every toy-model claim of the talk and print a pass/fail table.

Writes ``OUT/report.json`` (rows as in docs/CONVENTIONS.md), ``OUT/report.md`` (the same rows as a markdown
table) and one PNG per claim to ``OUT``. Exit code 0
when no row fails (an ``erratum`` row is a finding about the talk's formula, not a failure of
the run), 1 when some row fails, 2 on bad arguments (one line ``scaleinv verify: error: ...``,
checked before any work; nothing written). Progress: a live bar (claims done / total, the
current claim) on a terminal, one ``[k/N] claim ...`` line per claim otherwise.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="results/verify", help="output directory (report.json + PNGs)")
    p.add_argument("--json", default=None, help="also write the report rows to this path")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed for every experiment")
    p.add_argument("--quick", action="store_true", help="smaller sweeps (< 2 min on 2 CPU cores)")
    p.add_argument("--only", default=None,
                   help="comma-separated claim-function names or row-id prefixes (e.g. C5,C8)")


# claim groups beyond the talk: (module, list name, row-id prefix); each list's i-th claim is <prefix><i+1>
EXTRA_GROUPS = (
    ("toyproblems.claims_rotational", "ROTATIONAL_CLAIMS", "R"),
    ("toyproblems.claims_schedules", "SCHEDULE_CLAIMS", "S"),
    ("toyproblems.claims_adamw_noise", "ADAMW_NOISE_CLAIMS", "N"),
    ("toyproblems.claims_timescale", "TIMESCALE_CLAIMS", "M"),
    ("toyproblems.claims_eos", "EOS_CLAIMS", "E"),
)


def selected_claims(only):
    import importlib

    from toyproblems.claims import CLAIMS

    claims = list(CLAIMS)
    by_prefix = {f"C{i + 1}": c for i, c in enumerate(CLAIMS)}
    for module, attr, prefix in EXTRA_GROUPS:
        try:
            group = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        claims += list(group)
        by_prefix.update({f"{prefix}{i + 1}": c for i, c in enumerate(group)})
    if not only:
        return claims
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    out = []
    for w in wanted:
        match = by_prefix.get(w) or next((c for c in claims if c.__name__ == w), None)
        if match is None:
            allowed = sorted(by_prefix) + [c.__name__ for c in claims]
            from scaleinv.usage import UsageError
            raise UsageError(f"--only: unknown claim {w!r}; allowed: {', '.join(allowed)}")
        out.append(match)
    return out


def run(args) -> int:
    import json
    import platform
    import time

    from scaleinv.usage import check_output_dir, check_output_file

    # every input checked before any work or any write
    out = check_output_dir(args.out, "--out").resolve()
    if args.json:
        check_output_file(args.json, "--json")
    claims = selected_claims(args.only)

    import jax

    from scaleinv.progress import progress
    from scaleinv.report import print_table, to_markdown, write_json

    out.mkdir(parents=True, exist_ok=True)
    rows, timings = [], {}
    t_all = time.time()
    with progress(len(claims), "scaleinv verify", unit="claim") as bar:
        for claim in claims:
            bar.item(claim.__name__)
            t = time.time()
            rows += claim(args.seed, args.quick, out)
            timings[claim.__name__] = round(time.time() - t, 2)
            bar.write(f"  {claim.__name__}: {timings[claim.__name__]:.1f} s")
            bar.update(1, last=claim.__name__)
    meta = {"seed": args.seed, "quick": args.quick, "jax": jax.__version__, "python": platform.python_version(),
            "seconds": round(time.time() - t_all, 1), "claim_seconds": timings}
    print_table(rows, title="scaleinv verify: toy-model claims of the talk and of the newer theory")
    write_json(rows, out / "report.json", meta)
    (out / "report.md").write_text(to_markdown(rows))
    if args.json:
        write_json(rows, args.json, meta)
    counts = {s: sum(r.status == s for r in rows) for s in ("pass", "erratum", "fail")}
    print(json.dumps(counts), f"-- report: {out / 'report.json'}; figures: {out}/*.png")
    return 1 if counts["fail"] else 0
