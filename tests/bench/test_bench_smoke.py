"""`scaleinv bench --quick` end to end, so the benchmark runner cannot rot.

Runs in a subprocess (the runner spawns its own subprocesses and sets thread counts), with
XLA's backend optimisation level 0: this test checks that every row is produced, not speeds,
and it roughly halves the compile time that dominates the quick run. Every non-peer row must be
present with a finite positive ratio; the HF peer rows carry a ratio when torch + transformers
are installed and say "peer not installed" otherwise.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NON_PEER = {"B1.loop", "B1.numpy", "B1.strided", "B2.rgc", "B2.gclip", "B3.tiny.bert", "B3.tiny.bert_plain", "B3.tiny.fwdbwd", "B3.attn",
            "B4.same_params", "B4.recipes", "B4.measured_rss", "B5.devices2", "B5.mfu",
            "B6.sibert.bf16", "B6.bert.bf16"}
PEER = {"B3.tiny.hf", "B3.tiny.hf_fullhead", "B3.tiny.bert_hf", "B3.tiny.plain_hf"}


@pytest.mark.timeout(2700)
def test_bench_quick_writes_all_rows(tmp_path):
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, "-m", "scaleinv.cli", "bench", "--quick", "--json", str(out),
                           "--markdown", str(md)], capture_output=True, text=True, cwd=REPO, timeout=2600,
                          env=dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r["id"]: r for r in report["rows"]}
    assert set(rows) == NON_PEER | PEER
    for rid in NON_PEER:
        r = rows[rid]
        assert isinstance(r["ratio"], float) and math.isfinite(r["ratio"]) and r["ratio"] > 0, r
        assert r["status"] in ("met", "missed", "report"), r
    from benchmarks import hf_peer

    for rid in PEER:
        r = rows[rid]
        if hf_peer.available():
            assert math.isfinite(r["ratio"]) and r["ratio"] > 0 and r["peer_value"] > 0, r
        else:
            assert r["status"] == "peer not installed" and r["ratio"] is None, r
    # parameters + state, AdamW vs SGD+WD+RGC, counted from shapes: (P + 2P + 4 B) / (P + 17 B) = 3
    assert rows["B4.same_params"]["ratio"] == pytest.approx(3.0, rel=1e-6)
    # measured resident memory: allocator granularity, so 10%
    assert rows["B4.measured_rss"]["ratio"] == pytest.approx(3.0, rel=0.1)
    # the toy contestants agree on the measured quantity (steps to reach loss < 1e-3)
    assert rows["B1.loop"]["extra"]["same_steps_to_1e-3"] == 1.0
    assert rows["B1.numpy"]["extra"]["same_steps_to_1e-3"] == 1.0
    assert rows["B1.strided"]["extra"]["identical_to_full_trace"] is True
    meta = report["meta"]
    assert meta["quick"] is True and meta["repeats"] >= 5
    assert meta["machine"]["cpu_model"] and meta["machine"]["versions"]["jax"]
    assert len(meta["loadavg_start"]) == 3 and len(meta["loadavg_end"]) == 3
    for t in rows["B2.rgc"]["extra"]["step_timings"].values():
        assert len(t["times_s"]) >= 5
    assert md.read_text().count("\n| B") == len(rows)
