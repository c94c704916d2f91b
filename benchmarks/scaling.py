"""Item 5: step time vs number of devices, and model FLOPs utilisation (MFU).

Scaling: for N in (1, 2, 4, 8) a SUBPROCESS started with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` runs the SIBERT training step data
parallel over N fake CPU devices (the trainer's 1-D ``data`` mesh, same global batch); with
``--quick`` one subprocess with 2 devices times meshes over 1 and 2 of them. The N
devices share the same physical cores, so this checks that the sharded program runs and what
the partitioning costs; it is NOT a speed-up measurement (reported, not claimed).

MFU = (model FLOPs per token) x (tokens/s) / (peak FLOP/s). Model FLOPs of one training step
(matmul FLOPs, 2 per multiply-add; backward = 2x forward, so training = 3x forward), per token,
with D = hidden, F = ffn, L = seq_len, V = vocab, n = layers, M = masked positions per row:

    forward/token = n (8 D^2 + 4 D F + 4 L D)            QKV + output proj, FFN, scores + context
                    + [SIBERT] 2 D^2                      the bias-free input projection W_in
                    + (M / L)(2 D^2 + 2 D V)              MLM head on the masked positions only
    train/token   = 3 x forward/token

(embedding gathers, norms, softmax / relu-normalise and the optimizer are not counted, as in
the usual 6N-style accounting). :func:`xla_flops_per_token` asks XLA's cost analysis of the
compiled forward+backward for comparison. Peak: pass ``--peak-tflops`` for an accelerator
(vendor dense figures for reference in ``REFERENCE_PEAK_TFLOPS``); on CPU the row uses a nominal
estimate cores x clock x FLOPs/cycle (AVX-512: 2 FMA units x 16 fp32 lanes x 2 = 64).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, List, Optional

from benchmarks.rows import BenchRow

REFERENCE_PEAK_TFLOPS = {  # vendor dense peaks, for use with --peak-tflops (not measured here)
    "NVIDIA H100 SXM bf16": 989.0, "NVIDIA H100 SXM tf32": 494.0, "NVIDIA A100 bf16": 312.0,
    "TPU v4 bf16": 275.0, "TPU v5e bf16": 197.0,
}


def model_flops_per_token(cfg) -> float:
    """Training FLOPs per token of the SIBERT / BERT step (formula in the module docstring)."""
    D, F, L, V, n = cfg.hidden, cfg.ffn, cfg.seq_len, cfg.vocab_size, cfg.layers
    M = max(1, int(round(cfg.mask_prob * L)))
    fwd = n * (8 * D * D + 4 * D * F + 4 * L * D) + (M / L) * (2 * D * D + 2 * D * V)
    if cfg.model == "sibert":
        fwd += 2 * D * D
    return 3.0 * fwd


def mfu(flops_per_token: float, tokens_per_s: float, peak_flops: float) -> float:
    """Model FLOPs utilisation = flops_per_token * tokens_per_s / peak_flops (peak in FLOP/s)."""
    if not peak_flops > 0:
        raise ValueError(f"peak_flops must be > 0, got {peak_flops}")
    return flops_per_token * tokens_per_s / peak_flops


def xla_flops_per_token(cfg) -> Optional[float]:
    """FLOPs per token of the compiled value_and_grad of the MLM loss, from XLA's cost analysis."""
    import jax

    from benchmarks.sibert_step import synthetic_batch
    from sibert.model import MLMModel, ModelConfig, init_params, mlm_loss

    mcfg = ModelConfig.from_train(cfg)
    model = MLMModel(mcfg)
    params = init_params(mcfg, jax.random.PRNGKey(0), cfg.seq_len)
    batch = {k: jax.numpy.asarray(v) for k, v in synthetic_batch(cfg).items()}
    c = jax.jit(jax.value_and_grad(lambda p: mlm_loss(model, p, batch)[0])).lower(params).compile()
    ca = c.cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else None
    if not ca or "flops" not in ca:
        return None
    return float(ca["flops"]) / (cfg.batch_size * cfg.seq_len)


def cpu_peak_flops() -> Dict[str, float]:
    """Nominal fp32 peak of this CPU: cores x clock (cpu MHz) x FLOPs/cycle (an ESTIMATE)."""
    mhz, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz") and mhz is None:
                    mhz = float(line.split(":")[1])
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    per_cycle = 64 if "avx512f" in flags else (32 if "avx2" in flags and "fma" in flags else 8)
    cores = os.cpu_count() or 1
    ghz = (mhz or 2000.0) / 1000.0
    return {"peak_flops": cores * ghz * 1e9 * per_cycle, "cores": cores, "ghz": ghz, "flops_per_cycle": per_cycle}


def _worker(ns, quick: bool, repeats: int) -> Dict[str, Dict[str, float]]:
    """Subprocess body (XLA_FLAGS already set by the parent to max(ns) devices): the step over
    the first n devices for each n in ``ns``, timed side by side."""
    import jax

    from benchmarks.sibert_bench import bench_config
    from benchmarks.sibert_step import make_step
    from benchmarks.timing import compare

    devs = jax.devices()
    if len(devs) != max(ns):
        raise RuntimeError(f"expected {max(ns)} devices, got {len(devs)}")
    cfg = bench_config("tiny", quick)
    steps, infos = {}, {}
    for n in ns:
        steps[n], infos[n] = make_step(cfg, devices=devs[:n])
    res = compare(steps, repeats=repeats)
    return {str(n): {"n_devices": n, "process_devices": len(devs), "median_s": res[n]["median_s"],
                     "times_s": res[n]["times_s"], "tokens_per_s": infos[n]["tokens_per_step"] / res[n]["median_s"],
                     "batch_size": cfg.batch_size} for n in ns}


def run_worker(ns, quick: bool, repeats: int) -> Dict[str, Dict[str, float]]:
    """One subprocess with ``--xla_force_host_platform_device_count=max(ns)``."""
    ns = list(ns)
    from sibert.devices import fake_cpu_devices_env

    env = fake_cpu_devices_env(max(ns))
    code = ("import json; from benchmarks.scaling import _worker; "
            f"print('RESULT ' + json.dumps(_worker({ns!r}, {quick!r}, {repeats})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"scaling worker (N={ns}) failed: {out.stderr[-2000:]}")


def bench(quick: bool, repeats: int, peak_tflops: Optional[float] = None,
          tokens_per_s: Optional[float] = None) -> List[BenchRow]:
    from benchmarks.sibert_bench import bench_config, describe

    cfg = bench_config("tiny", quick)
    counts = (1, 2) if quick else (1, 2, 4, 8)
    if quick:   # one subprocess with 2 devices, meshes over 1 and 2 of them (smoke-test time)
        res = {int(k): v for k, v in run_worker(counts, quick, repeats).items()}
    else:       # one subprocess per N, as a user would launch it
        res = {n: run_worker([n], quick, repeats)[str(n)] for n in counts}
    base = res[1]["median_s"]
    rows = []
    for n in counts[1:]:
        rows.append(BenchRow(f"B5.devices{n}", "SIBERT step, data parallel over N fake CPU devices (same global batch; "
                             + describe(cfg) + ")", f"N = {n}", "N = 1", res[n]["median_s"], base, "s/step",
                             base / res[n]["median_s"], "t(N=1) / t(N) (speed-up; NOT claimed on CPU)", "", "report",
                             note="fake devices share the same 2 cores: this checks the sharded program, not scaling",
                             extra={"per_n": res}))
    from benchmarks.sibert_bench import COSTS, step_key

    flops = model_flops_per_token(cfg)
    known = COSTS.get(step_key(cfg), {}).get("flops")   # the throughput item already compiled it
    xla = known / (cfg.batch_size * cfg.seq_len) if known else xla_flops_per_token(cfg)
    tps = tokens_per_s if tokens_per_s is not None else res[1]["tokens_per_s"]
    cpu = cpu_peak_flops()
    peak = peak_tflops * 1e12 if peak_tflops else cpu["peak_flops"]
    achieved = flops * tps
    rows.append(BenchRow("B5.mfu", "MFU = model FLOPs/token x tokens/s / peak, SIBERT step (" + describe(cfg) + ")",
                         "achieved FLOP/s (model FLOPs)", ("peak FLOP/s (--peak-tflops)" if peak_tflops else
                                                           "nominal CPU peak (cores x clock x 64 FLOP/cycle, estimate)"),
                         achieved, peak, "FLOP/s", mfu(flops, tps, peak), "MFU", "", "report",
                         note=(f"model FLOPs/token {flops:.4g} (formula) vs XLA cost analysis of fwd+bwd "
                               f"{xla if xla is None else f'{xla:.4g}'}; no GPU/TPU lent to this run: MFU on an "
                               "accelerator = same formula with its tokens/s and peak (--peak-tflops)"),
                         extra={"model_flops_per_token": flops, "xla_flops_per_token_fwd_bwd": xla,
                                "tokens_per_s": tps, "cpu_peak": cpu, "reference_peak_tflops": REFERENCE_PEAK_TFLOPS}))
    return rows
