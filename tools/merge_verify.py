#!/usr/bin/env python
"""Merge rows of a fresh ``scaleinv verify`` run into a committed report (docs/ARCHITECTURE.md, "Regenerating
results": one group at a time, then merge the rows).

    scaleinv verify --only S1,S2,S3,S4,M1,M2 --out /tmp/v          # full mode, seed 0
    python tools/merge_verify.py /tmp/v/report.json --rows S2.7,S2.8,M1.4 \
        --into docs/results/verify docs/results/verify/newer --note "rows ...: full-mode run of commit ..."

Each ``--into`` directory's report.json gets the listed rows replaced in place (every listed row must exist
there and in the fresh run, with the same seed and mode), ``meta.note`` extended by ``--note``, and its
report.md rewritten from the merged rows (scaleinv.report.to_markdown). Rows not listed stay byte-identical.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    from scaleinv.report import Row, to_markdown, write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("fresh", help="report.json of the fresh run")
    ap.add_argument("--rows", required=True, help="comma-separated row ids to take from the fresh run")
    ap.add_argument("--into", nargs="+", required=True, help="report directories (report.json + report.md)")
    ap.add_argument("--note", required=True, help="appended to meta.note: which rows, which run")
    args = ap.parse_args(argv)
    fresh = json.loads(Path(args.fresh).read_text())
    new = {r["id"]: r for r in fresh["rows"]}
    ids = [i.strip() for i in args.rows.split(",") if i.strip()]
    missing = [i for i in ids if i not in new]
    if missing:
        ap.error(f"rows not in the fresh run: {missing}")
    for d in args.into:
        path = Path(d) / "report.json"
        rep = json.loads(path.read_text())
        for key in ("seed", "quick"):
            if rep["meta"].get(key) != fresh["meta"].get(key):
                ap.error(f"{path}: meta.{key} {rep['meta'].get(key)!r} != the fresh run's {fresh['meta'].get(key)!r}")
        have = {r["id"] for r in rep["rows"]}
        absent = [i for i in ids if i not in have]
        if absent:
            ap.error(f"{path}: no rows {absent} to replace")
        rep["rows"] = [new[r["id"]] if r["id"] in ids else r for r in rep["rows"]]
        rep["meta"]["note"] = (rep["meta"].get("note", "") + "; " + args.note).lstrip("; ")
        rows = [Row(**r) for r in rep["rows"]]
        write_json(rows, path, rep["meta"])
        (Path(d) / "report.md").write_text(to_markdown(rows))
        print(f"{path}: {len(ids)} rows replaced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
