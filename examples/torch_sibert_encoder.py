"""PyTorch users: the SIBERT recipe on a torch encoder, checked, trained and plotted with scaleinv.torch.

1. The model (:class:`scaleinv.torch.examples.SIEncoder`): token + position embeddings
   (1-homogeneous) -> bias-free projection (2-homogeneous) -> PreNorm encoder layers with
   SI attention relu(s)/sum relu(s), ReLU feed-forward, non-affine LayerNorms ((2;2) each) ->
   non-affine final LayerNorm (0-homogeneous) -> linear head. The loss is scale invariant in the
   ``encoder`` parameters, which :func:`scaleinv.torch.testing.assert_scale_invariant_loss`
   checks before training (and ``scaleinv audit scaleinv.torch.examples:si_encoder`` reports).
2. Training: the encoder with :class:`scaleinv.torch.optim.SGDWD` (SGD + weight decay +
   relative global clipping), the head with plain SGD (another param group: no decay, no clip),
   on a synthetic task (the class is the first token mod 3, with 30 % label noise).
3. :class:`scaleinv.torch.dynamics.Dynamics` logs every ``--every`` steps; ``scaleinv plot``
   draws loss, encoder norm, clip rate and the angular update beside its equilibrium prediction
   sqrt(2 eta lambda) (Kosson et al. 2024).

Run: ``python examples/torch_sibert_encoder.py --out runs/torch_sibert`` (~1 min on one CPU core).

The full SIBERT masked language model (the flax model of ``sibert/model.py``, loading a
``scaleinv export`` directory) is :class:`scaleinv.torch.sibert.SIBERTForMaskedLM`.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from scaleinv.torch.dynamics import Dynamics
from scaleinv.torch.examples import SIEncoder
from scaleinv.torch.optim import SGDWD
from scaleinv.torch.testing import assert_scale_invariant_loss

VOCAB, SEQ, CLASSES = 31, 12, 3


def batch(gen, size=32, noise=0.3):
    """The class is the first token mod 3, replaced by a random class with probability ``noise``
    (label noise keeps the gradients alive, as in real data, so the encoder reaches its
    rotational equilibrium instead of a zero-gradient fit)."""
    tokens = torch.randint(0, VOCAB, (size, SEQ), generator=gen)
    labels = tokens[:, 0] % CLASSES
    flip = torch.rand(size, generator=gen) < noise
    return tokens, torch.where(flip, torch.randint(0, CLASSES, (size,), generator=gen), labels)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/torch_sibert")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    model = SIEncoder(vocab=VOCAB, max_len=SEQ, dim=32, ffn=64, layers=2, classes=CLASSES)
    gen = torch.Generator().manual_seed(1)

    # 1. the loss is scale invariant in the encoder (float64 copy for tight tolerances)
    tokens, labels = batch(gen)
    check = SIEncoder(vocab=VOCAB, max_len=SEQ, dim=32, ffn=64, layers=2, classes=CLASSES).double()
    check.load_state_dict(model.state_dict())
    assert_scale_invariant_loss(check, "encoder", inputs=(tokens, labels))

    # 2. SGD + WD + relative global clipping on the encoder, plain SGD on the head
    opt = SGDWD([{"params": model.encoder.parameters(), "weight_decay": args.weight_decay},
                 {"params": model.head.parameters(), "weight_decay": 0.0}], lr=args.lr)
    out = Path(args.out)
    if (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").unlink()
    with Dynamics(model, opt, out, every=args.every, per_neuron=True) as dyn:
        for _ in range(args.steps):
            tokens, labels = batch(gen)
            opt.zero_grad()
            loss = model(tokens, labels)
            loss.backward()
            dyn.observe(loss)
            opt.step()
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    tail = rows[len(rows) // 2:]
    summary = {
        "steps": args.steps,
        "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"],
        "encoder_norm_first": rows[0]["x_norm"], "encoder_norm_last": rows[-1]["x_norm"],
        "angle_rms_second_half": math.sqrt(sum(r["angular_update"] ** 2 for r in tail) / len(tail)),
        "predicted_angle": rows[-1]["pred_angle"],
        "clipped_steps_logged": sum(bool(r["clipped"]) for r in rows),
        "logged_rows": len(rows),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))

    # 3. the curves
    if not args.no_plot:
        from scaleinv.cli import main as cli
        cli(["plot", str(out), "--out", str(out / "curves.png")])
    return summary


if __name__ == "__main__":
    main()
