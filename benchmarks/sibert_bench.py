"""Items 2 and 3: relative-global-clipping overhead and SIBERT training-step throughput.

Item 2 (target < 5%): the SIBERT tiny training step (forward + backward + update + the trainer's
diagnostics) with the encoder optimizer

    relative_global_clip -> SGD+WD   vs   SGD+WD   vs   clip_by_global_norm -> SGD+WD,

same head optimizer (LAMB), timed side by side. The overhead is t(RGC) / t(SGD+WD) - 1.
A lower-noise breakdown times the optimizer update alone (``tx.update`` + ``apply_updates`` on
the real parameter tree) and expresses the extra cost as a fraction of the whole step.

Item 3 (target >= 1.0x): tokens/s = batch * seq_len / step time of the SIBERT step vs the HF
``BertForMaskedLM`` + torch AdamW step of the identical shape (:mod:`benchmarks.hf_peer`), head on
the masked positions only (like for like) and, reported, the stock full-sequence head. Also
SIBERT vs our BERT (softmax attention, PostNorm, GeLU), each with its own recipe (SGD+WD+RGC /
AdamW) and, to isolate the model, forward+backward only; and the attention probabilities
alone: p = relu(s) / max(sum relu(s), eps) vs softmax(s / sqrt(d_k)), forward+backward.
"""
from __future__ import annotations

from typing import List

from benchmarks.rows import BenchRow, judged
from benchmarks.sibert_step import make_step, synthetic_batch, tiny_config
from benchmarks.timing import compare, paired_ratio

TARGET_CLIP = 0.05
TARGET_THROUGHPUT = 1.2   # issue 16: SIBERT and BERT steps >= 1.2x HF torch tokens/s
# one compiled step per (config, encoder optimizer) per process (the clip and throughput items
# time the same SIBERT step), and XLA cost analyses of fwd+bwd by config (reused by scaling)
_STEPS: dict = {}
COSTS: dict = {}


def step_key(cfg, variant=None):
    """Cache key of a compiled step / cost analysis: the config's fields and the optimizer variant."""
    return (tuple(sorted(cfg.to_dict().items())), variant)


def _judge(quick: bool, ratio: float, lower=None, upper=None) -> str:
    """Targets are judged on the full sizes only; --quick (smoke-test sizes) reports."""
    return "report" if quick else judged(ratio, lower, upper)


def cached_step(cfg, variant=None):
    k = step_key(cfg, variant)
    if k not in _STEPS:
        _STEPS[k] = make_step(cfg, variant)
    return _STEPS[k]


def quick_overrides():
    """Smallest sizes for --quick (smoke test): 1 layer, hidden 64, vocab 1024, 8 x 32 tokens."""
    return dict(layers=1, hidden=64, heads=2, ffn=128, vocab_size=1024, batch_size=8, seq_len=32,
                max_positions=32)


def bench_config(preset, quick, model="sibert"):
    """The benchmark's model config: ``preset`` of ``model``, shrunk by :func:`quick_overrides` if ``quick``."""
    return tiny_config(preset, model, **(quick_overrides() if quick else {}))


def describe(cfg) -> str:
    return (f"layers {cfg.layers}, hidden {cfg.hidden}, heads {cfg.heads}, ffn {cfg.ffn}, "
            f"vocab {cfg.vocab_size}, batch {cfg.batch_size} x seq {cfg.seq_len}")


def bench_clip(quick: bool, repeats: int) -> List[BenchRow]:
    import jax
    import optax

    cfg = bench_config("tiny", quick)
    variants = ("sgd-wd-rgc", "sgd-wd", "sgd-wd+clip_by_global_norm")
    steps, infos = {}, {}
    for v in variants:
        steps[v], infos[v] = cached_step(cfg, None if v == cfg.optimizer else v)
    res = compare(steps, repeats=repeats, inner=1 if quick else 5)
    # optimizer update alone, on the real parameter tree, grads = params (values do not matter)
    upd = {}
    from sibert.model import ModelConfig, init_params

    params = init_params(ModelConfig.from_train(cfg), jax.random.PRNGKey(1), cfg.seq_len)
    for v in variants:
        tx = infos[v]["tx"]
        st = tx.init(params)
        f = jax.jit(lambda p, g, s, tx=tx: optax.apply_updates(p, tx.update(g, s, p)[0]))
        upd[v] = (lambda f=f, s=st: f(params, params, s))
    ures = compare(upd, repeats=repeats, inner=20)
    t = {v: res[v]["median_s"] for v in variants}
    u = {v: ures[v]["median_s"] for v in variants}
    over = paired_ratio(res, "sgd-wd-rgc", "sgd-wd") - 1.0
    pr = [a / b for a, b in zip(res["sgd-wd-rgc"]["times_s"], res["sgd-wd"]["times_s"])]
    iso = (u["sgd-wd-rgc"] - u["sgd-wd"]) / t["sgd-wd"]
    shape = ("quick sizes: " if quick else "tiny preset: ") + describe(cfg)
    extra = {"step_timings": res, "update_only_timings": ures, "update_only_s": u,
             "rgc_extra_update_cost_fraction_of_step": iso, "config": shape}
    return [
        BenchRow("B2.rgc", f"SIBERT step ({shape}): encoder optimizer with vs without relative global clipping",
                 "RGC -> SGD+WD step", "SGD+WD step (no clipping)", t["sgd-wd-rgc"], t["sgd-wd"], "s/step",
                 over + 1.0, "our time / peer time (1 + overhead)", f"< {1 + TARGET_CLIP:g} (overhead < 5%)",
                 _judge(quick, over + 1.0, upper=1.0 + TARGET_CLIP),
                 note=(f"overhead {over:+.1%} of the step (median of {repeats} paired rounds, per-round range "
                       f"{min(pr) - 1:+.1%} to {max(pr) - 1:+.1%}); isolated update cost "
                       f"{iso:+.2%} of the step (update alone: RGC {1e3 * u['sgd-wd-rgc']:.3g} ms vs "
                       f"{1e3 * u['sgd-wd']:.3g} ms)"), extra=extra),
        BenchRow("B2.gclip", f"SIBERT step ({shape}): relative vs absolute global-norm clipping",
                 "RGC -> SGD+WD step", "optax.clip_by_global_norm(1) -> SGD+WD step", t["sgd-wd-rgc"],
                 t["sgd-wd+clip_by_global_norm"], "s/step", paired_ratio(res, "sgd-wd-rgc", "sgd-wd+clip_by_global_norm"),
                 "our time / peer time", "", "report",
                 note=(f"update alone: RGC {1e3 * u['sgd-wd-rgc']:.3g} ms vs clip_by_global_norm "
                       f"{1e3 * u['sgd-wd+clip_by_global_norm']:.3g} ms"), extra=extra),
    ]


def _grad_fn(cfg, costs=None):
    """Jitted value_and_grad of the MLM loss; XLA's cost analysis goes into ``costs``."""
    import jax

    from sibert.model import MLMModel, ModelConfig, init_params, mlm_loss

    mcfg = ModelConfig.from_train(cfg)
    model = MLMModel(mcfg)
    params = init_params(mcfg, jax.random.PRNGKey(0), cfg.seq_len)
    batch = {k: jax.numpy.asarray(v) for k, v in synthetic_batch(cfg).items()}
    g = jax.jit(jax.value_and_grad(lambda p: mlm_loss(model, p, batch)[0])).lower(params).compile()
    if costs is not None:
        ca = g.cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) and ca else ca
        costs.update({k: float(v) for k, v in (ca or {}).items()
                      if k in ("flops", "bytes accessed", "transcendentals")})
        COSTS[step_key(cfg)] = dict(costs)
    return lambda: g(params)


def _attention_rows(cfg, repeats, quick) -> List[BenchRow]:
    import math

    import jax
    import jax.numpy as jnp

    from sibert.model import si_attention_probs

    B, H, L = cfg.batch_size, cfg.heads, cfg.seq_len
    dk = cfg.hidden // cfg.heads
    s = jax.random.normal(jax.random.PRNGKey(0), (B, H, L, L), jnp.float32)
    w = jax.random.normal(jax.random.PRNGKey(1), (B, H, L, L), jnp.float32)
    si = jax.jit(jax.value_and_grad(lambda x: jnp.sum(si_attention_probs(x, cfg.attn_eps) * w)))
    sm = jax.jit(jax.value_and_grad(lambda x: jnp.sum(jax.nn.softmax(x / math.sqrt(dk), axis=-1) * w)))
    res = compare({"si": lambda: si(s), "softmax": lambda: sm(s)}, repeats=repeats, inner=5)
    ts, tm = res["si"]["median_s"], res["softmax"]["median_s"]
    r = paired_ratio(res, "softmax", "si")
    return [BenchRow("B3.attn", f"attention probabilities, fwd+bwd, scores ({B}, {H}, {L}, {L})",
                     "relu(s) / max(sum relu(s), eps)", "softmax(s / sqrt(d_k))", ts, tm, "s",
                     r, "peer time / our time", ">= 1 (SI costs no more)", _judge(quick, r, 1.0),
                     extra={"timings": res})]


def peer_rows(preset: str, shape: str, ours: str, tps: dict, quick: bool, hf_threads: dict, hf_info: dict,
              extra: dict, ratios: dict = None) -> List[BenchRow]:
    """The two HF rows from the measured tokens/s ``tps`` (keys sibert, hf_masked, hf_full) and
    the paired ratios (``ratios[hf_*]``; default: ratio of the tps); without the hf_* keys (peer
    not installed) the rows say so and carry no ratio."""
    ratios = ratios or {}
    rows = []
    for head, label in (("masked", "head on masked positions (like for like)"),
                        ("full", "stock head over all positions")):
        rid = f"B3.{preset}.hf" + ("" if head == "masked" else "_fullhead")
        peer = f"HF BertForMaskedLM + torch AdamW (CPU), {label}"
        target = f">= {TARGET_THROUGHPUT:g}" if head == "masked" else ""
        if f"hf_{head}" in tps:
            r = ratios.get(f"hf_{head}", tps["sibert"] / tps[f"hf_{head}"])
            status = _judge(quick, r, TARGET_THROUGHPUT) if head == "masked" else "report"
            rows.append(BenchRow(rid, "training-step throughput " + shape, ours, peer, tps["sibert"],
                                 tps[f"hf_{head}"], "tokens/s", r, "our tokens/s / peer tokens/s", target, status,
                                 note=(f"torch threads {hf_threads.get('threads')} (the faster of "
                                       f"{sorted(hf_threads.get('in_run_medians_s', hf_threads.get('seconds_by_threads', {})))}"
                                       f" in this run); attention "
                                       f"{hf_info.get('attn_implementation')}"), extra=extra))
        else:
            rows.append(BenchRow(rid, "training-step throughput " + shape, ours, peer, tps["sibert"], None,
                                 "tokens/s", None, "our tokens/s / peer tokens/s", target, "peer not installed",
                                 note='pip install -e ".[bench]" (torch==2.13.0 CPU wheel + transformers)',
                                 extra=extra))
    return rows


def one_thread_child(preset: str, quick: bool, repeats: int) -> None:
    """Run in a subprocess pinned to ONE core (so XLA's thread pool has one thread, like torch
    at ``set_num_threads(1)``): SIBERT and BERT steps vs the HF masked-head step, interleaved;
    prints one JSON line."""
    import json
    import os

    import torch

    from benchmarks import flax_peer, hf_peer

    torch.set_num_threads(1)
    cfg, bert_cfg = bench_config(preset, quick), bench_config(preset, quick, model="bert")
    c = {"sibert": cached_step(cfg)[0], "bert": cached_step(bert_cfg)[0],
         "plain_flax": flax_peer.make_plain_flax_step(bert_cfg, synthetic_batch(bert_cfg))[0],
         "hf_masked": hf_peer.make_hf_step(cfg, synthetic_batch(cfg), "masked")[0]}
    res = compare(c, repeats=repeats)
    tok = cfg.batch_size * cfg.seq_len
    print(json.dumps({"affinity": sorted(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
                      "tokens_per_s": {k: tok / v["median_s"] for k, v in res.items()},
                      "ratios": {m: paired_ratio(res, "hf_masked", m) for m in ("sibert", "bert", "plain_flax")},
                      "bert_vs_plain_flax": paired_ratio(res, "plain_flax", "bert"),
                      "timings": res}))


def _one_thread(preset: str, quick: bool, repeats: int):
    """:func:`one_thread_child` in a subprocess on one core; None (with the reason) where the
    platform cannot pin a process (no ``os.sched_setaffinity``)."""
    import json
    import os
    import subprocess
    import sys

    if not hasattr(os, "sched_setaffinity"):
        return None, "os.sched_setaffinity unavailable: one-thread comparison not run"
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            f"from benchmarks.sibert_bench import one_thread_child; one_thread_child({preset!r}, {quick}, {repeats})")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError(f"one-thread benchmark subprocess failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1]), ""


def bench_throughput(quick: bool, repeats: int, presets=None) -> List[BenchRow]:
    from benchmarks import flax_peer, hf_peer

    rows: List[BenchRow] = []
    have_peer = hf_peer.available()
    peer_versions = hf_peer.versions() if have_peer else {}
    for preset in (("tiny",) if quick else tuple(presets or ("tiny", "small"))):
        cfg = bench_config(preset, quick)
        shape = (("quick sizes" if quick else preset) + ": " + describe(cfg)
                 + f", {max(1, round(cfg.mask_prob * cfg.seq_len))} masked/row")
        tok = cfg.batch_size * cfg.seq_len
        si_step, si_info = cached_step(cfg)
        bert_cfg = bench_config(preset, quick, model="bert")
        bert_step, bert_info = cached_step(bert_cfg)
        # the textbook flax.linen BERT of the same shapes (no code shared with sibert/): is the
        # gap to HF in our step or in JAX/XLA itself? (benchmarks.flax_peer)
        plain_step, plain_info = flax_peer.make_plain_flax_step(bert_cfg, synthetic_batch(bert_cfg))
        contestants = {"sibert": si_step, "bert": bert_step, "plain_flax": plain_step}
        hf_info, hf_threads = {}, {}
        if have_peer:
            batch = synthetic_batch(cfg)
            if quick:   # smoke sizes: no calibration, one thread (see hf_peer.best_threads)
                import torch

                torch.set_num_threads(1)
                hf_threads = {"threads": 1, "seconds_by_threads": {}}
            else:
                hf_threads = hf_peer.best_threads(cfg, batch)
            contestants["hf_masked"], hf_info = hf_peer.make_hf_step(cfg, batch, "masked")
            contestants["hf_full"], _ = hf_peer.make_hf_step(cfg, batch, "full")
            if not quick:   # the masked-head peer at BOTH thread counts, side by side (stalls vary)
                import os

                import torch

                def at(n, step):
                    def call():
                        torch.set_num_threads(n)
                        return step()
                    return call

                best = hf_threads["threads"]
                for n in sorted({1, os.cpu_count() or 1}):
                    contestants[f"hf_masked_t{n}"] = at(n, hf_peer.make_hf_step(cfg, batch, "masked")[0])
                contestants["hf_masked"] = at(best, contestants["hf_masked"])
                contestants["hf_full"] = at(best, contestants["hf_full"])
        res = compare(contestants, repeats=repeats)
        variants = [k for k in res if k.startswith("hf_masked_t")]
        if variants:   # the peer's figure: its faster thread count in this very run
            fastest = min(variants, key=lambda k: res[k]["median_s"])
            hf_threads["in_run_medians_s"] = {k: res[k]["median_s"] for k in variants}
            hf_threads["threads"] = int(fastest.rsplit("_t", 1)[1])
            res["hf_masked"] = res[fastest]
            for k in variants:
                res.pop(k)
        tps = {k: tok / v["median_s"] for k, v in res.items()}
        extra = {"timings": res, "tokens_per_s": tps, "config": shape, "peer": {**peer_versions, **hf_info, "thread_choice": hf_threads},
                 "n_params": {"sibert": si_info["n_params"], "bert": bert_info["n_params"],
                              "plain_flax": plain_info["n_params"], "hf": hf_info.get("n_params")}}
        ours = f"SIBERT step (SGD+WD+RGC encoder, LAMB head), {preset}"
        ratios = {k: paired_ratio(res, k, "sibert") for k in res if k != "sibert"}
        extra["paired_ratios"] = ratios
        prows = peer_rows(preset, shape, ours, tps, quick, hf_threads, hf_info, extra, ratios)
        if not quick:   # where the step's time goes, ours and the peer's (full runs only)
            from benchmarks.profile_step import jax_breakdown, torch_breakdown

            prof = {"sibert": jax_breakdown(si_step), "plain_flax": jax_breakdown(plain_step)}
            if have_peer:
                prof["hf_masked"] = torch_breakdown(contestants["hf_masked"])
            extra["profile"] = prof
            if have_peer and prows and prows[0].status == "missed":
                j, t = prof["sibert"], prof["hf_masked"]
                prows[0].note += (f"; profile (ms/step): matmul ours {j['by_category_ms'].get('matmul')} "
                                  f"(CPU time over {j['worker_threads']} XLA threads, busy fraction "
                                  f"{j['busy_fraction']}) vs peer {t['by_category_ms'].get('matmul')} "
                                  f"({t['threads']} thread); copy/transpose {j['by_category_ms'].get('copy/transpose')}"
                                  f" vs {t['by_category_ms'].get('copy/transpose')}")
        rows += prows
        if have_peer:   # our BERT step vs the same HF step (same run, same thread choice)
            rows.append(BenchRow(f"B3.{preset}.bert_hf", "training-step throughput " + shape,
                                 f"our BERT step (AdamW encoder + head), {preset}",
                                 "HF BertForMaskedLM + torch AdamW (CPU), head on masked positions (like for like)",
                                 tps["bert"], tps["hf_masked"], "tokens/s", paired_ratio(res, "hf_masked", "bert"),
                                 "our tokens/s / peer tokens/s", f">= {TARGET_THROUGHPUT:g}",
                                 _judge(quick, paired_ratio(res, "hf_masked", "bert"), TARGET_THROUGHPUT),
                                 note=f"torch threads {hf_threads.get('threads')}; XLA: all cores", extra=extra))
        else:
            for rid in (f"B3.{preset}.bert_hf", f"B3.{preset}.plain_hf") + (() if quick else (f"B3.{preset}.hf_1thread", f"B3.{preset}.bert_hf_1thread",
                                                                         f"B3.{preset}.plain_hf_1thread")):
                rows.append(BenchRow(rid, "training-step throughput " + shape, ours, "HF BertForMaskedLM + torch AdamW",
                                     None, None, "tokens/s", None, "our tokens/s / peer tokens/s",
                                     f">= {TARGET_THROUGHPUT:g}", "peer not installed",
                                     note='pip install -e ".[bench]" (torch==2.13.0 CPU wheel + transformers)'))
        plain_label = f"plain flax.linen BERT step (benchmarks/flax_peer.py, optax.adamw), {preset}"
        if have_peer:   # the reference point: what a textbook flax BERT reaches against the same HF step
            r = paired_ratio(res, "hf_masked", "plain_flax")
            rows.append(BenchRow(f"B3.{preset}.plain_hf", "training-step throughput " + shape, plain_label,
                                 "HF BertForMaskedLM + torch AdamW (CPU), head on masked positions (like for like)",
                                 tps["plain_flax"], tps["hf_masked"], "tokens/s", r, "plain tokens/s / peer tokens/s",
                                 "", "report", note=(f"torch threads {hf_threads.get('threads')}; XLA: all cores. "
                                                     "Bounds what any flax/XLA step reaches here"), extra=extra))
        r = paired_ratio(res, "plain_flax", "bert")
        rows.append(BenchRow(f"B3.{preset}.bert_plain", "training-step throughput " + shape,
                             f"our BERT step (sibert.model + sibert.train, AdamW), {preset}", plain_label,
                             tps["bert"], tps["plain_flax"], "tokens/s", r, "our tokens/s / peer tokens/s", "",
                             "report", note=("same shapes and work; ours adds the trainer's per-step diagnostics, "
                                             "parameter groups and shardings"), extra=extra))
        if have_peer and not quick:   # full runs only: a pinned core on a shared machine is slow to get
            one, why = _one_thread(preset, quick, repeats)
            for m, label in (("sibert", ours), ("bert", f"our BERT step (AdamW encoder + head), {preset}"),
                             ("plain_flax", plain_label)):
                rid = f"B3.{preset}.{ {'sibert': 'hf', 'bert': 'bert_hf', 'plain_flax': 'plain_hf'}[m] }_1thread"
                peer = "HF BertForMaskedLM + torch AdamW, head on masked positions, torch 1 thread"
                if one is None:
                    rows.append(BenchRow(rid, "training-step throughput, ONE core " + shape, label, peer, None, None,
                                         "tokens/s", None, "our tokens/s / peer tokens/s", "", "report", note=why))
                    continue
                r1 = one["ratios"][m]
                plain = m == "plain_flax"   # the reference point, not our step: reported, not judged
                rows.append(BenchRow(rid, "training-step throughput, ONE core " + shape, label, peer,
                                     one["tokens_per_s"][m], one["tokens_per_s"]["hf_masked"], "tokens/s", r1,
                                     "our tokens/s / peer tokens/s", "" if plain else f">= {TARGET_THROUGHPUT:g}",
                                     "report" if plain else _judge(quick, r1, TARGET_THROUGHPUT),
                                     note=(f"subprocess pinned to CPU {one['affinity']} (XLA's pool and torch: 1 "
                                           f"thread each), contestants interleaved"
                                           + (f"; our BERT / plain flax in the same run: {one['bert_vs_plain_flax']:.3f}x"
                                              if plain else "")), extra={"one_thread": one}))
        rows.append(BenchRow(f"B3.{preset}.bert", "training-step throughput " + shape, ours,
                             "our BERT step (softmax attention, AdamW)", tps["sibert"], tps["bert"], "tokens/s",
                             ratios["bert"], "our tokens/s / peer tokens/s", "", "report",
                             note="different optimizers (SGD+WD+RGC/LAMB vs AdamW): see .fwdbwd for the model alone",
                             extra=extra))
        c_si, c_bert = {}, {}
        g = compare({"sibert": _grad_fn(cfg, c_si), "bert": _grad_fn(bert_cfg, c_bert)}, repeats=repeats)
        r = paired_ratio(g, "bert", "sibert")
        spread = (min(g["bert"]["times_s"]) / max(g["sibert"]["times_s"]),
                  max(g["bert"]["times_s"]) / min(g["sibert"]["times_s"]))
        xla = "; ".join(f"{k} {c_si.get(k, float('nan')) / c_bert.get(k, float('nan')):.3g}x"
                        for k in ("flops", "bytes accessed", "transcendentals"))
        rows.append(BenchRow(f"B3.{preset}.fwdbwd", "forward + backward only (value_and_grad of the MLM loss) " + shape,
                             "SIBERT", "our BERT", tok / g["sibert"]["median_s"], tok / g["bert"]["median_s"],
                             "tokens/s", r, "our tokens/s / peer tokens/s", ">= 1 (SI costs no more)",
                             _judge(quick, r, 1.0),
                             note=(f"round-to-round range of the ratio {spread[0]:.3g}-{spread[1]:.3g}; "
                                   f"XLA cost analysis SIBERT/BERT: {xla}"),
                             extra={"timings": g, "xla_cost_sibert": c_si, "xla_cost_bert": c_bert}))
        if preset == "tiny":
            rows += _attention_rows(cfg, repeats, quick)
    return rows


def bench_precision(quick: bool, repeats: int) -> List[BenchRow]:
    """bf16 mixed precision vs float32 (issue 30 item 2): the trainer's step of SIBERT and of our
    BERT, ``precision = "bf16"`` vs ``"f32"``, same shapes and recipe, timed interleaved. A CPU
    gains only where XLA:CPU has bf16 kernels for the shapes, so bf16
    may well be SLOWER here (converts around every matmul; whether the CPU's bf16 units are used is
    XLA's choice): the row reports the ratio, it sets no target (the accelerator
    figure is benchmarks/accelerator_check.py's). Measured 2026-12-07 on a 2-core Xeon with AMX-BF16 under
    load 8-11: quick sizes 1.24x (SIBERT) / 1.21x (BERT), tiny preset 0.89x / 0.89x (bf16 slower)."""
    import dataclasses

    rows: List[BenchRow] = []
    for model in ("sibert", "bert"):
        cfg = bench_config("tiny", quick, model=model)
        shape = ("quick sizes: " if quick else "tiny preset: ") + describe(cfg)
        steps = {p: cached_step(dataclasses.replace(cfg, precision=p))[0] for p in ("f32", "bf16")}
        res = compare(steps, repeats=repeats)
        tok = cfg.batch_size * cfg.seq_len
        r = paired_ratio(res, "f32", "bf16")   # t_f32 / t_bf16 = bf16 tokens/s / f32 tokens/s
        rows.append(BenchRow(f"B6.{model}.bf16", f"training step, bf16 mixed precision vs float32 ({shape})",
                             f"{model} step, precision=bf16", f"{model} step, precision=f32",
                             tok / res["bf16"]["median_s"], tok / res["f32"]["median_s"], "tokens/s", r,
                             "bf16 tokens/s / f32 tokens/s (> 1: bf16 faster)", "", "report",
                             note=("CPU figure (bf16 can be slower on a CPU: conversions around every matmul); "
                                   "the accelerator figure: benchmarks/accelerator_check.py"),
                             extra={"timings": res, "config": shape}))
    return rows
