#!/usr/bin/env python
"""Seed-to-seed spread of every ``scaleinv verify`` row (issue 27: a verdict must hold for every seed).

    python tools/seed_spread.py                                # verify --quick at seeds 0..4, all groups
    python tools/seed_spread.py --seeds 0,1,2,3,4,5 --only M2,S1 --json results/spread.json
    python tools/seed_spread.py --reports run_s0 run_s1 ...    # reuse verify outputs (dirs or report.json)
    python tools/seed_spread.py --full --only S1,S2,S3,S4,M1,M2 --keep /tmp/full \
        --json docs/results/verify/seed_spread_full_SM.json     # full mode of the budgeted groups

Writes ``docs/results/verify/seed_spread.json`` by default. For every row and every machine-readable
check of it (``scaleinv.report.close`` / ``within``, ``extra["check"]["pass"]``) the statistic the
check bounds, per seed:

* ``close`` with ``rtol > 0``: the worst element's relative error max |m - p| / |p| (against ``rtol``);
  with ``rtol == 0``: the worst absolute error (against ``atol``);
* ``within``: the largest value (against ``hi``), the smallest (against ``lo``), or both;

and its mean and standard deviation over the seeds (``sd``, ddof = 1), plus per row the fraction of
its tolerance used (``usage``: 1 = at the tolerance, > 1 fails) at every seed. A row's budget
(docs/CONVENTIONS.md, "Error budgets") = its known approximation error + the noise measured here;
its tolerance must stay <= 3x that budget. ``flips``: rows whose status is not the same at every seed.
Out of the test run (tools/ is not a test path): five quick runs take ~5 min on 2 idle cores.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "results" / "verify" / "seed_spread.json"


def _flat(x):
    return [v for e in x for v in _flat(e)] if isinstance(x, list) else [x]


def check_stat(c: dict) -> dict:
    """{'stat': {...}, 'limit': {...}, 'usage': u} of one check (u = fraction of its tolerance used)."""
    if c["kind"] == "close":
        m, p = [float(v) for v in _flat(c["measured"])], [float(v) for v in _flat(c["predicted"])]
        if len(p) == 1:
            p = p * len(m)
        dev = [abs(a - b) for a, b in zip(m, p)]
        allowed = [c["atol"] + c["rtol"] * abs(b) for b in p]
        usage = max((d / a if a > 0 else (math.inf if d > 0 else 0.0)) for d, a in zip(dev, allowed))
        if c["rtol"] > 0:
            rel = max((d / abs(b) if b != 0 else math.inf) for d, b in zip(dev, p))
            return {"stat": {"rel_err": rel}, "limit": {"rel_err": c["rtol"]}, "usage": usage}
        return {"stat": {"abs_err": max(dev)}, "limit": {"abs_err": c["atol"]}, "usage": usage}
    vals = [float(v) for v in _flat(c["value"])]
    lo = None if c["lo"] is None else float(c["lo"])
    hi = None if c["hi"] is None else float(c["hi"])
    stat, limit = {}, {}
    if hi is not None:
        stat["max"], limit["max"] = max(vals), hi
    if lo is not None:
        stat["min"], limit["min"] = min(vals), lo
    if hi is not None and hi > 0 and (lo is None or lo <= 0):       # an upper bound (lo <= 0: a sign condition)
        usage = max(vals) / hi if lo is None or min(vals) >= lo else math.inf
    elif lo is not None and hi is None and lo > 0:
        usage = lo / min(vals) if min(vals) > 0 else math.inf
    elif lo is not None and hi is not None and hi > lo:
        mid, half = (hi + lo) / 2, (hi - lo) / 2
        usage = max(abs(v - mid) for v in vals) / half
    else:      # one-sided at a bound <= 0: report the margin only
        usage = 1.0 if all((hi is None or v <= hi) and (lo is None or v >= lo) for v in vals) else math.inf
        usage = 0.0 if usage == 1.0 else usage
    return {"stat": stat, "limit": limit, "usage": usage}


def _mean_sd(xs):
    xs = [x for x in xs if math.isfinite(x)]
    if not xs:
        return math.nan, math.nan
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else math.nan
    return m, sd


def spread(reports: list) -> dict:
    """The per-row spread over ``reports`` (parsed report.json payloads, one per seed)."""
    seeds = [r["meta"].get("seed") for r in reports]
    order, rows = [], {}
    for rep in reports:
        for row in rep["rows"]:
            if row["id"] not in rows:
                order.append(row["id"])
                rows[row["id"]] = {"status": [], "usage": [], "checks": []}
    out = {}
    for rid in order:
        entry = {"status": [], "usage": [], "checks": []}
        per_seed = []
        for rep in reports:
            row = next((r for r in rep["rows"] if r["id"] == rid), None)
            if row is None:
                entry["status"].append(None)
                per_seed.append(None)
                continue
            entry["status"].append(row["status"])
            st = [check_stat(c) for c in row["extra"]["check"]["pass"]]
            entry["usage"].append(max(s["usage"] for s in st))
            per_seed.append((row["extra"]["check"]["pass"], st))
        first = next(p for p in per_seed if p is not None)
        for k, c in enumerate(first[0]):
            ck = {"name": c["name"], "kind": c["kind"], "limit": first[1][k]["limit"], "stat": {}}
            for key in first[1][k]["stat"]:
                vals = [p[1][k]["stat"][key] if p is not None and k < len(p[1]) else math.nan for p in per_seed]
                m, sd = _mean_sd(vals)
                ck["stat"][key] = {"per_seed": vals, "mean": m, "sd": sd}
            entry["checks"].append(ck)
        entry["usage_max"] = max(entry["usage"]) if entry["usage"] else math.nan
        out[rid] = entry
    flips = [rid for rid, e in out.items() if len(set(e["status"])) > 1]
    return {"seeds": seeds, "rows": out, "flips": flips,
            "near_tolerance": [rid for rid, e in out.items() if 0.8 < e["usage_max"] <= 1.0]}


def _run(seeds, only, quick: bool, tmp: Path) -> list:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    reports = []
    for s in seeds:
        out = tmp / f"seed{s}"
        cmd = [sys.executable, "-m", "scaleinv.cli", "verify", "--seed", str(s), "--out", str(out)]
        cmd += ["--quick"] if quick else []
        cmd += ["--only", only] if only else []
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, check=False)
        reports.append(json.loads((out / "report.json").read_text()))
    return reports


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--only", default=None, help="verify --only (claim ids), default every group")
    ap.add_argument("--full", action="store_true", help="full mode instead of --quick")
    ap.add_argument("--reports", nargs="*", default=None, help="existing verify outputs instead of running")
    ap.add_argument("--json", default=str(DEFAULT_OUT))
    ap.add_argument("--keep", default=None, help="keep the runs' outputs in KEEP/seed<s> (default: a temporary directory)")
    args = ap.parse_args(argv)
    if args.reports:
        reports = []
        for p in args.reports:
            p = Path(p)
            reports.append(json.loads((p / "report.json" if p.is_dir() else p).read_text()))
    else:
        seeds = [int(s) for s in args.seeds.split(",")]
        if args.keep:
            reports = _run(seeds, args.only, not args.full, Path(args.keep))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                reports = _run(seeds, args.only, not args.full, Path(tmp))
    if len(reports) < 2:
        ap.error("need at least two seeds")
    res = spread(reports)
    quick = {r["meta"].get("quick") for r in reports}
    res = {"meta": {"seeds": res.pop("seeds"), "quick": quick.pop() if len(quick) == 1 else sorted(quick),
                    "only": args.only, "command": "python tools/seed_spread.py " + " ".join(argv or sys.argv[1:])},
           **res}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(_jsonable(res), indent=1) + "\n")
    for rid, e in res["rows"].items():
        if rid in res["flips"] or e["usage_max"] > 0.8:
            print(f"{rid:18s} status {e['status']}  tolerance used {[round(u, 2) for u in e['usage']]}")
    print(f"flips: {res['flips']}; -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
