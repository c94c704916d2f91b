"""``scaleinv verify``: run every toy-model claim of the talk and print a pass/fail table.

Writes ``OUT/report.json`` (rows as in docs/CONVENTIONS.md), ``OUT/report.md`` (the same rows as a markdown
table) and one PNG per claim to ``OUT``. Exit code 0
when no row fails (an ``erratum`` row is a finding about the talk's formula, not a failure of
the run), 1 when some row fails, 2 on bad arguments (one line ``scaleinv verify: error: ...``,
checked before any work; nothing written). Progress: a live bar (claims done / total, the
current claim) on a terminal, one ``[k/N] claim ...`` line per claim otherwise.

``--jobs N`` runs the claims in N worker processes (default: one per CPU core this process may
use, at most one per task). A task is one claim of the talk, or all selected claims of one group
beyond the talk (``EXTRA_GROUPS``: a group's claims share its simulations, which one worker then
computes once). Tasks go out longest first (the LPT rule: the last task to start is a short
one), by the seconds each claim took in the last run on this machine with the same ``--quick``
(``verify_seconds.json`` next to the compilation cache, ``~/.cache/scaleinv/``, rewritten after
every run); claims never timed go first, then, without any timing, groups before the talk's
claims (without timings the talk's C5, ~25 s, is submitted after every group). Measured on 2
idle cores, full run: 67.5 and 62.2 s with the timing order against 64.9 s without it, i.e.
within run-to-run noise, not a measured speed-up; kept because, with accurate timings, LPT's
schedule is within 4/3 of the best one. Every claim seeds
its own PRNG, so the rows are the same as in one process (the report keeps the claim order);
only the wall time changes. Each worker compiles its own programs (the persistent compilation
cache is shared).
"""
from __future__ import annotations

import argparse
import os


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="results/verify", help="output directory (report.json + PNGs)")
    p.add_argument("--json", default=None, help="also write the report rows to this path")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed for every experiment")
    p.add_argument("--quick", action="store_true", help="smaller sweeps (< 2 min on 2 CPU cores)")
    p.add_argument("--only", default=None,
                   help="comma-separated claim-function names or row-id prefixes (e.g. C5,C8)")
    p.add_argument("--jobs", default="auto",
                   help="worker processes running claims in parallel: a positive integer, or auto "
                        "(one per usable CPU core, at most one per task; 1 = in this process)")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def parse_jobs(value, n_claims: int) -> int:
    """``--jobs``: 'auto' -> min(usable cores, tasks); else a positive integer (capped at tasks)."""
    from scaleinv.usage import UsageError

    if str(value).strip().lower() == "auto":
        jobs = usable_cores()
    else:
        try:
            jobs = int(value)
        except ValueError:
            jobs = 0
        if jobs < 1:
            raise UsageError(f"--jobs: expected a positive integer or auto, got {value!r}")
    return max(1, min(jobs, n_claims))


def tasks(claims, seconds=None):
    """The claims as tasks for worker processes: each group beyond the talk (same module, sharing
    its simulations) is one task, each claim of the talk one task; groups first. With
    ``seconds`` ({claim name: seconds of its last run}) the tasks are sorted longest first by the
    sum over their claims, a task with an untimed claim counting as longest (stable sort)."""
    groups = {m for m, _ in EXTRA_GROUPS}
    grouped, single = {}, []
    for c in claims:
        if c.__module__ in groups:
            grouped.setdefault(c.__module__, []).append(c)
        else:
            single.append([c])
    work = list(grouped.values()) + single
    if seconds:
        def expected(task):
            return sum(float(seconds.get(c.__name__, float("inf"))) for c in task)
        work.sort(key=expected, reverse=True)
    return work


def _seconds_path():
    from scaleinv.compile_cache import default_dir

    return default_dir().parent / "verify_seconds.json"


def load_seconds(quick: bool) -> dict:
    """{claim name: seconds} of the last timed runs on this machine (``{}`` if none or unreadable)."""
    import json

    try:
        d = json.loads(_seconds_path().read_text())[("quick" if quick else "full")]
        return {str(k): float(v) for k, v in d.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save_seconds(quick: bool, timings: dict) -> None:
    """Merge this run's per-claim seconds into the history (best effort: never fails the run)."""
    import json

    path = _seconds_path()
    try:
        try:
            hist = json.loads(path.read_text())
            hist = hist if isinstance(hist, dict) else {}
        except (OSError, ValueError):
            hist = {}
        key = "quick" if quick else "full"
        hist[key] = {**(hist.get(key) if isinstance(hist.get(key), dict) else {}), **timings}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(hist, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def _run_claims(names, seed: int, quick: bool, out: str):
    """Claims ``[(module, name), ...]`` in one worker process, in order: [(name, rows, seconds)]."""
    import importlib
    import time
    from pathlib import Path

    done = []
    for module, name in names:
        claim = getattr(importlib.import_module(module), name)
        t = time.time()
        rows = claim(seed, quick, Path(out))
        stray = [r.id for r in rows if not r.id.startswith(claim.claim_id + ".")]
        if stray:   # a row must carry its claim's declared id (toyproblems.ids)
            raise RuntimeError(f"{name} (claim {claim.claim_id}) returned rows {stray}: ids must be {claim.claim_id}.<tag>")
        done.append((name, rows, round(time.time() - t, 2)))
    return done


# claim groups beyond the talk: (module, list name). Every claim declares its own id (toyproblems.ids.claim_id,
# e.g. "M2": rows M2.1, M2.2, ...); a list's order is only the report's order (issue 27: inserting a claim renumbers
# nothing)
EXTRA_GROUPS = (
    ("toyproblems.claims_rotational", "ROTATIONAL_CLAIMS"),
    ("toyproblems.claims_schedules", "SCHEDULE_CLAIMS"),
    ("toyproblems.claims_adamw_noise", "ADAMW_NOISE_CLAIMS"),
    ("toyproblems.claims_timescale", "TIMESCALE_CLAIMS"),
    ("toyproblems.claims_eos", "EOS_CLAIMS"),
)


def claims_by_id(claims) -> dict:
    """{declared claim id: claim function}; a claim without a declared id, or two claims with one id, is an error."""
    by_id: dict = {}
    for c in claims:
        cid = getattr(c, "claim_id", None)
        if cid is None:
            raise ValueError(f"claim {c.__module__}.{c.__name__} declares no id (decorate it with toyproblems.ids.claim_id)")
        if cid in by_id:
            raise ValueError(f"claim id {cid!r} declared twice: {by_id[cid].__name__} and {c.__name__}")
        by_id[cid] = c
    return by_id


def selected_claims(only):
    import importlib

    from toyproblems.claims import CLAIMS

    claims = list(CLAIMS)
    for module, attr in EXTRA_GROUPS:
        try:
            group = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        claims += list(group)
    by_prefix = claims_by_id(claims)
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
    work = tasks(claims, load_seconds(args.quick))
    jobs = parse_jobs(args.jobs, len(work))

    import jax

    from scaleinv.progress import progress
    from scaleinv.report import print_table, to_markdown, write_json

    out.mkdir(parents=True, exist_ok=True)
    results, timings = {}, {}
    t_all = time.time()
    with progress(len(claims), "scaleinv verify", unit="claim") as bar:
        def done(name, claim_rows, seconds):
            results[name], timings[name] = claim_rows, seconds
            bar.write(f"  {name}: {seconds:.1f} s")
            bar.update(1, last=name)

        if jobs == 1:
            for claim in claims:
                bar.item(claim.__name__)
                done(*_run_claims([(claim.__module__, claim.__name__)], args.seed, args.quick, str(out))[0])
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            bar.item(f"{len(claims)} claims ({len(work)} tasks) in {jobs} processes")
            # spawn, not fork: this process has JAX (and its thread pools) initialised
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_run_claims, [(c.__module__, c.__name__) for c in task], args.seed,
                                       args.quick, str(out)) for task in work]
                for fut in as_completed(futures):
                    for name, claim_rows, seconds in fut.result():
                        done(name, claim_rows, seconds)
    rows = [r for claim in claims for r in results[claim.__name__]]   # claim order, as with --jobs 1
    timings = {c.__name__: timings[c.__name__] for c in claims}
    save_seconds(args.quick, timings)
    meta = {"seed": args.seed, "quick": args.quick, "jax": jax.__version__, "python": platform.python_version(),
            "seconds": round(time.time() - t_all, 1), "jobs": jobs, "claim_seconds": timings}
    print_table(rows, title="scaleinv verify: toy-model claims of the talk and of the newer theory")
    write_json(rows, out / "report.json", meta)
    (out / "report.md").write_text(to_markdown(rows))
    if args.json:
        write_json(rows, args.json, meta)
    counts = {s: sum(r.status == s for r in rows) for s in ("pass", "erratum", "fail")}
    print(json.dumps(counts), f"-- report: {out / 'report.json'}; figures: {out}/*.png")
    return 1 if counts["fail"] else 0
