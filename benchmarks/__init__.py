"""benchmarks: speed and memory of scaleinv, every figure a ratio against a peer measured in
the same run (``scaleinv bench``; console in :mod:`scaleinv.cli.bench`).

Modules:
  toy_sweep    -- the vmap + scan toy sweep vs a Python loop / NumPy
  sibert_bench -- relative-clipping overhead and SIBERT step throughput vs HF BERT
  sibert_step  -- the benchmarked SIBERT / BERT training step and synthetic batches
  hf_peer      -- the HF ``BertForMaskedLM`` + torch AdamW peer step
  memory       -- optimizer-state memory, SGD+WD+RGC vs AdamW, on base-size parameters
  scaling      -- data parallel over fake CPU devices, MFU
  profile_step -- where a step's time goes (jax.profiler, torch.profiler)
  timing       -- side-by-side (interleaved) timing, paired ratios, machine info
  rows         -- BenchRow and its JSON / markdown output
"""
