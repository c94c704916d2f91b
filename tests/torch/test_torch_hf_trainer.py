"""scaleinv.torch.hf_trainer.DynamicsCallback in a real ``transformers.Trainer``: a tiny
BertForMaskedLM (random init, no download), a few synthetic MLM examples, a few CPU steps.

The callback's rows must equal, value for value, those of the hand-written ``Dynamics`` loop on
a copy of the same model with the same data order, optimizer and scheduler. Exact equality is
the right test: both runs do the same float32 ops on the same CPU in one process (dropout 0,
sequential sampler, no Trainer gradient clipping), so the trajectories are bitwise identical
and the float64 statistics computed from them too; any missed / extra / shifted step, a loss
from the wrong micro-batch or a different LR changes the numbers.
"""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch not installed: pip install 'scaleinv[torch]'")
transformers = pytest.importorskip("transformers", reason="transformers not installed: needed for the Trainer tests")
try:
    import accelerate  # noqa: F401  (transformers.Trainer needs it)
except ImportError:
    pytest.skip("accelerate not installed: transformers.Trainer needs it (pip install 'scaleinv[hf]')",
                allow_module_level=True)

from torch.optim.lr_scheduler import LambdaLR  # noqa: E402
from transformers import BertConfig, BertForMaskedLM, Trainer, TrainingArguments  # noqa: E402

from scaleinv.torch.dynamics import Dynamics  # noqa: E402
from scaleinv.torch.hf_trainer import DynamicsCallback, DynamicsCallbackError  # noqa: E402
from scaleinv.torch.optim import SGDWD, RelativeGlobalClip  # noqa: E402
from scaleinv.torch.rotational import Rotational  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STEPS, BATCH, SEQ, VOCAB = 4, 4, 8, 40


def _model():
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=SEQ, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    return BertForMaskedLM(cfg)


def _data():
    g = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(STEPS * BATCH):
        ids = torch.randint(5, VOCAB, (SEQ,), generator=g)
        labels = torch.full((SEQ,), -100)
        pos = torch.randperm(SEQ, generator=g)[:2]
        labels[pos] = ids[pos]
        ids = ids.clone()
        ids[pos] = 4  # [MASK]
        rows.append({"input_ids": ids, "attention_mask": torch.ones(SEQ, dtype=torch.long), "labels": labels})
    return rows


def _groups(model):
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embeddings" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embeddings" not in n)]
    return [{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}]


def _rotational(model):
    groups = _groups(model)
    return Rotational(torch.optim.AdamW(groups, lr=1e-2), rotate=groups[0]["params"])


OPTIMIZERS = {
    "sgdwd": lambda m: SGDWD(_groups(m), lr=0.5, C=2.0),
    "rgc-adamw": lambda m: RelativeGlobalClip(torch.optim.AdamW(_groups(m), lr=1e-2), C=2.0),
    "rotational-adamw": lambda m: _rotational(m),
}


def _sched(opt):
    return LambdaLR(opt, lambda s: (s + 1) / STEPS)  # a warmup: the LR changes every step


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _hand_loop(model, opt, sched, data, run_dir, **kw):
    from transformers import default_data_collator
    dyn = Dynamics(model, opt, run_dir, **kw)
    model.train()
    for s in range(STEPS):
        batch = default_data_collator(data[s * BATCH:(s + 1) * BATCH])
        opt.zero_grad()
        out = model(**batch)
        out.loss.backward()
        dyn.observe(out.loss)
        opt.step()
        sched.step()
    dyn.close()
    return _rows(Path(run_dir) / "metrics.jsonl")


class _SequentialTrainer(Trainer):
    """Older transformers (no ``train_sampling_strategy``): the data in order, as the hand loop."""

    def _get_train_sampler(self, *args, **kwargs):
        return torch.utils.data.SequentialSampler(self.train_dataset)


def _trainer(model, opt, sched, data, out, callback):
    kw = dict(output_dir=str(out), max_steps=STEPS, per_device_train_batch_size=BATCH, max_grad_norm=0.0,
              report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, seed=0,
              dataloader_num_workers=0, disable_tqdm=True)
    fields = getattr(TrainingArguments, "__dataclass_fields__", {})
    cls = Trainer if "train_sampling_strategy" in fields else _SequentialTrainer
    if cls is Trainer:
        kw["train_sampling_strategy"] = "sequential"
    return cls(model=model, args=TrainingArguments(**kw), train_dataset=data, optimizers=(opt, sched),
               callbacks=[callback])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_callback_rows_equal_hand_written_loop(tmp_path, name):
    data = _data()
    base = _model()
    m_hand, m_tr = copy.deepcopy(base), copy.deepcopy(base)
    opt = OPTIMIZERS[name](m_hand)
    hand = _hand_loop(m_hand, opt, _sched(opt), data, tmp_path / "hand", per_neuron=True)

    opt = OPTIMIZERS[name](m_tr)
    cb = DynamicsCallback(tmp_path / "cb", per_neuron=True)
    _trainer(m_tr, opt, _sched(opt), data, tmp_path / "trainer_out", cb).train()
    got = _rows(tmp_path / "cb" / "metrics.jsonl")

    assert [r["step"] for r in hand] == list(range(STEPS))
    assert [r["step"] for r in got] == list(range(STEPS))
    assert len(got[0]) > 50  # per-layer / per-neuron keys of a 2-layer BERT
    for h, g in zip(hand, got):
        assert g.keys() == h.keys()
        diff = {k: (h[k], g[k]) for k in h if h[k] != g[k]}
        assert not diff, f"step {h['step']}: {list(diff.items())[:5]}"
    # the run is not trivial: the weights moved, the LR followed the scheduler, the loss is logged
    assert all(r["angular_update"] > 0 for r in got)
    assert [r["lr"] for r in got] == [pytest.approx(OPTIMIZERS[name](base).param_groups[0]["lr"] * (s + 1) / STEPS)
                                      for s in range(STEPS)]
    assert all(isinstance(r["loss"], float) for r in got)
    assert got[0]["pred_angle"] is not None and got[0]["pred_angle"] > 0
    # the callback's model is the trained one: its final weights equal the hand loop's
    for (n, a), (_, b) in zip(m_hand.named_parameters(), m_tr.named_parameters()):
        assert torch.equal(a, b), n
    assert json.loads((tmp_path / "cb" / "config.json").read_text()) == \
        json.loads((tmp_path / "hand" / "config.json").read_text())


def test_callback_every_and_loss_of_the_step(tmp_path):
    data = _data()
    model = _model()
    opt = OPTIMIZERS["sgdwd"](model)
    cb = DynamicsCallback(tmp_path / "cb", every=2)
    _trainer(model, opt, _sched(opt), data, tmp_path / "o", cb).train()
    rows = _rows(tmp_path / "cb" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 2]
    assert cb.dynamics is not None and cb.dynamics.last == rows[-1]
    assert cb._hook is None  # the forward hook is removed at the end of training


def test_callback_tensorboard_events_equal_its_rows(tmp_path):
    pytest.importorskip("tensorboardX", reason="tensorboardX not installed: pip install 'scaleinv[tensorboard]'")
    pytest.importorskip("tensorboard", reason="tensorboard not installed (its EventAccumulator reads the events)")
    import numpy as np

    from scaleinv.tensorboard import read_scalars, scalars

    model = _model()
    opt = OPTIMIZERS["sgdwd"](model)
    cb = DynamicsCallback(tmp_path / "cb", tensorboard=tmp_path / "tb")
    _trainer(model, opt, _sched(opt), _data(), tmp_path / "o", cb).train()
    want = {}
    for r in _rows(tmp_path / "cb" / "metrics.jsonl"):
        for tag, v in scalars(r).items():
            want.setdefault(tag, {})[r["step"]] = float(np.float32(v))
    assert "angular_update" in want and len(want["angular_update"]) == STEPS
    assert read_scalars(tmp_path / "tb") == want


def test_callback_with_the_trainers_own_optimizer(tmp_path):
    """No optimizers=: the callback attaches to Trainer's AdamW (under AcceleratedOptimizer)."""
    model = _model()
    args = TrainingArguments(output_dir=str(tmp_path / "o"), max_steps=2, per_device_train_batch_size=BATCH,
                             learning_rate=1e-3, weight_decay=0.01, max_grad_norm=0.0, report_to=[],
                             save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True)
    cb = DynamicsCallback(tmp_path / "cb")
    Trainer(model=model, args=args, train_dataset=_data(), callbacks=[cb]).train()
    rows = _rows(tmp_path / "cb" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1]
    cfg = json.loads((tmp_path / "cb" / "config.json").read_text())
    assert cfg["optimizer"] == "adamw" and cfg["weight_decay"] == 0.01
    # group 0 of Trainer's AdamW: the decayed weights; the equilibrium angle of AdamW
    lr0 = rows[1]["lr"]
    assert rows[1]["pred_angle"] == pytest.approx((2 * lr0 * 0.01 * (1 - 0.9) / (1 + 0.9)) ** 0.5, rel=1e-12)


def test_callback_without_optimizer_is_refused(tmp_path):
    cb = DynamicsCallback(tmp_path / "cb")
    state = transformers.TrainerState()
    with pytest.raises(DynamicsCallbackError, match="optimizers=\\(opt, scheduler\\)"):
        cb.on_train_begin(None, state, None, model=_model(), optimizer=None)
    assert not (tmp_path / "cb").exists()


def test_import_scaleinv_torch_does_not_import_transformers():
    code = ("import sys, scaleinv, scaleinv.torch, scaleinv.torch.dynamics, scaleinv.torch.optim\n"
            "assert 'transformers' not in sys.modules, 'transformers imported'\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
