"""``scaleinv bench``: speed and memory benchmarks, every figure a ratio against a peer measured
side by side in the same run (absolute times are reported, not claimed: shared machines are noisy).

Items (``--only`` takes their names): ``toy`` (vmap+scan sweep vs Python loop / NumPy),
``clip`` (relative global clipping overhead), ``throughput`` (SIBERT step vs HF BertForMaskedLM
and our BERT), ``memory`` (SGD+WD+RGC vs AdamW state on base-size parameters), ``scaling``
(fake CPU devices in subprocesses + MFU), ``precision`` (bf16 vs float32 step), ``data`` (the
prepared token shards: peak RSS 1x vs 30x corpus, tokenise throughput, loader vs step time; not in
the default set: it writes a 30x corpus to a temporary directory and tokenises it, ~15 min).
Timings: warm-up excluded, median of ``--repeats``
(>= 5) interleaved rounds, ``block_until_ready``. Prints a table, writes ``--json`` (rows +
machine info + load averages at start and end) and optionally ``--markdown``. Exit code 0 when
the run completes (missed targets are findings, listed in the table), 2 on bad arguments.
"""
from __future__ import annotations

import argparse

ITEMS = ("toy", "clip", "throughput", "memory", "scaling", "precision", "data")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="smallest sizes (smoke test, < 1 min)")
    p.add_argument("--json", default=None, help="write rows + machine info to this path")
    p.add_argument("--markdown", default=None, help="write the results table (markdown) to this path")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per contestant (>= 5; default 5, full 7)")
    p.add_argument("--only", default=None, help=f"comma-separated items among {', '.join(ITEMS)}")
    p.add_argument("--presets", default=None,
                   help="throughput presets, comma-separated among tiny, small (default: both; --quick: quick sizes)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="accelerator peak for the MFU row (default: nominal CPU estimate)")


def _items(only):
    if not only:
        return [i for i in ITEMS if i != "data"]
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    bad = [w for w in wanted if w not in ITEMS]
    if bad:
        from scaleinv.usage import UsageError
        raise UsageError(f"--only: unknown item(s) {', '.join(map(repr, bad))}; allowed: {', '.join(ITEMS)}")
    return wanted


def run(args) -> int:
    import time
    from datetime import datetime, timezone

    from benchmarks.rows import print_rows, to_markdown, write_json
    from benchmarks.timing import loadavg, machine_info, procs_running

    from scaleinv.usage import UsageError, check_output_file, optional_check

    items = _items(args.only)
    presets = None
    if getattr(args, "presets", None):
        presets = tuple(w.strip() for w in args.presets.split(",") if w.strip())
        bad = [w for w in presets if w not in ("tiny", "small")]
        if bad or not presets:
            raise SystemExit(f"--presets: unknown preset(s) {', '.join(map(repr, bad))}; allowed: tiny, small")
    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 7)
    if repeats < 5:
        raise UsageError(f"--repeats: must be >= 5 (median of at least 5), got {repeats}")
    if args.peak_tflops is not None and not (args.peak_tflops > 0 and args.peak_tflops < float("inf")):
        raise UsageError(f"--peak-tflops: must be a finite number > 0, got {args.peak_tflops}")
    for flag, path in (("--json", args.json), ("--markdown", args.markdown)):
        optional_check(check_output_file, path, flag)
    load_start, procs_start = loadavg(), procs_running()
    t_all = time.time()
    from scaleinv.progress import progress

    rows, seconds = [], {}
    bar = progress(len(items), "scaleinv bench", unit="item")
    for item in items:
        bar.item(item)
        t = time.time()
        if item == "toy":
            from benchmarks.toy_sweep import bench as b
            rows += b(args.quick, repeats)
        elif item == "clip":
            from benchmarks.sibert_bench import bench_clip
            rows += bench_clip(args.quick, repeats if args.quick else max(repeats, 11))
        elif item == "throughput":
            from benchmarks.sibert_bench import bench_throughput
            rows += bench_throughput(args.quick, repeats, presets)
        elif item == "memory":
            from benchmarks.memory import bench as b
            rows += b(args.quick)
        elif item == "precision":
            from benchmarks.sibert_bench import bench_precision
            rows += bench_precision(args.quick, repeats)
        elif item == "scaling":
            from benchmarks.scaling import bench as b
            rows += b(args.quick, repeats, args.peak_tflops)
        elif item == "data":
            from benchmarks.data_pipeline import bench as b
            rows += b(args.quick, repeats)
        seconds[item] = round(time.time() - t, 1)
        bar.write(f"  {item}: {seconds[item]:.1f} s")
        bar.update(1)
    bar.close()
    info = machine_info()
    meta = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick, "repeats": repeats, "items": items, "seconds": seconds,
        "total_seconds": round(time.time() - t_all, 1),
        "machine": info,
        "loadavg_start": load_start, "loadavg_end": loadavg(),
        "procs_running_start": procs_start, "procs_running_end": procs_running(),
        "note": ("shared machine: other processes (other agents' jobs) were running during this run; "
                 "see loadavg_start / loadavg_end. Ratios are measured side by side (interleaved rounds); "
                 "absolute numbers are reported, not claimed."),
    }
    machine = f"{info['cpu_model']}, {info['cpu_count']} cores, {info['jax_backend']}"
    print_rows(rows, title="scaleinv bench" + (" --quick" if args.quick else ""))
    print(f"machine: {machine}; accelerator: {info['accelerator']}; load {load_start} -> {meta['loadavg_end']}")
    if args.json:
        write_json(rows, args.json, meta)
        print(f"wrote {args.json}")
    if args.markdown:
        from pathlib import Path

        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(to_markdown(rows, machine))
        print(f"wrote {args.markdown}")
    return 0
