"""Produced docs/results/hf_export/finetune.jsonl (python finetune_runs.py RUN_DIR 0,1,2 > out.jsonl).

RUN_DIR: `scaleinv train --model {bert,sibert} --preset tiny --set steps=... ` (see README.md here).
For each seed: the pretrained encoder and, as a control, a freshly initialised one (same split)."""
import json
import sys
import dataclasses
import jax
from sibert.data import load_documents
from sibert.finetune import article_task, finetune
from sibert.runs import load_run
from sibert.model import init_params
run_dir, seeds = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 2
run = load_run(run_dir)
docs = load_documents(run.config.source)
for init in ("pretrained", "random"):
    r = run if init == "pretrained" else dataclasses.replace(run, params=init_params(run.model_config, jax.random.PRNGKey(123), run.config.seq_len))
    for seed in seeds:
        task = article_task(docs, n=n, seed=seed)
        out = finetune(r, task, steps=150, batch_size=16, seq_len=64, seed=seed)
        out.update(init=init, seed=seed, run_step=run.step, n_classes=n)
        print(json.dumps(out), flush=True)
