"""Parity of scaleinv.torch.sibert with the flax SIBERT on a run trained STEPS steps (issue 31).

    python docs/results/hf_export/torch_sibert_parity.py 300 [WORK_DIR]

Trains the test config (tests/sibert/_sibert_helpers.py: sample corpus, hidden 32, 2 layers, seq
32) into WORK_DIR (default /tmp/torch_sibert_parity), exports it with `scaleinv export`, loads it
with SIBERTForMaskedLM.from_pretrained and prints the max |logit difference| over the real tokens
of a padded batch of held-out sentences (cut to varying lengths)."""
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "sibert"))
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _sibert_helpers import SAMPLE, tiny_overrides  # noqa: E402

from scaleinv.cli import main as cli  # noqa: E402
from scaleinv.torch.sibert import SIBERTForMaskedLM  # noqa: E402
from sibert.config import apply_overrides, preset  # noqa: E402
from sibert.data import encode_examples, load_documents, split_documents  # noqa: E402
from sibert.model import MLMModel  # noqa: E402
from sibert.runs import load_run  # noqa: E402
from sibert.train import train  # noqa: E402

torch.set_num_threads(1)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 300
root = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("/tmp/torch_sibert_parity")
run_dir = root / f"si{steps}"
t = time.time()
if not (run_dir / "summary.json").exists():
    cfg = apply_overrides(preset("tiny", "sibert"), tiny_overrides(root / "cache", steps=steps, ckpt_every=steps, eval_every=steps, eval_batches=4))
    s = train(cfg, run_dir, log=lambda *_: None); print("train", s["status"], s["final_eval"], time.time() - t)
out = root / f"export{steps}"
if not out.exists():
    assert cli(["export", str(run_dir), "--to", "hf", str(out)]) == 0
run = load_run(run_dir)
_, held = split_documents(load_documents(SAMPLE), 0.25)
pieces = [w for _, tx in held for s in tx.split(". ") for w in [s.split()] if len(w) >= 3]
lens = [3, 7, 12, 20, 30, 5, 9, 15]
sents = [" ".join(w[:lens[i % len(lens)]]) for i, w in enumerate(pieces)][:64]
ids, mask = encode_examples(run.tokenizer, sents, run.config.seq_len)
B, L = ids.shape
pos = jnp.tile(jnp.arange(L, dtype=jnp.int32)[None], (B, 1))
f = np.asarray(MLMModel(run.model_config).apply({"params": run.params}, jnp.asarray(ids), pos, attention_mask=jnp.asarray(mask)))
m = SIBERTForMaskedLM.from_pretrained(out)
with torch.no_grad():
    tl = m(torch.as_tensor(ids).long(), attention_mask=torch.as_tensor(mask)).logits.numpy()
real = mask.astype(bool)
print(json.dumps({"steps": steps, "sentences": B, "padding": float(1 - real.mean()), "max_abs_diff": float(np.abs(f - tl)[real].max()),
       "logit_absmax": float(np.abs(f[real]).max()), "logit_scale_param": float(run.params["head"]["logit_scale"])}))
