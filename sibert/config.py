"""Training configuration for SIBERT / BERT masked-language-model pretraining.

One flat dataclass, :class:`TrainConfig`, three presets (``tiny``, ``small``, ``base``),
``--set key=value`` / TOML overrides, and :func:`validate`, which names the bad field and the
allowed values (the CLI turns :class:`ConfigError` into exit code 2 before anything is written).

Optimizer recipes (paper Sec. 5 / talk "Ingredient 2, 3"; see docs/PAPER_NOTES.md):

* ``sgd-wd-rgc`` (SIBERT default): encoder = relative global clipping + SGD + WD, no momentum,
  no warmup, LR divided by 10 at 60% and 90% of training:
      g <- g min(1, sqrt(2 C lambda / eta_t) ||x|| / ||g||),   x <- (1 - eta_t lambda) x - eta_t g.
  The paper states sqrt(C) = 2 (C = 4), the talk "C > 1, default 2": ``clip_C`` exposes C, the
  default here is the talk's C = 2 (set ``clip_C=4`` for the paper's value).
* ``sgd-wd``: the same without clipping; ``sgd``: plain SGD (no WD, no clipping);
* ``adamw``: AdamW with linear warmup + linear decay (the BERT baseline's recipe).

The MLM head (never scale invariant) has its own optimizer ``head_optimizer``: ``lamb`` (the
paper's choice for SIBERT) or ``adamw``, with warmup + linear decay.

Paper hyper-parameters (base: 1M steps) are ``lr=8e-4, weight_decay=1e-2``. Honest note on the
``tiny`` preset: for a scale-invariant encoder SGD acts through the effective LR
eta / ||x||^2, and the norm equilibrium needs ~1/(eta lambda) steps to be reached (Thm 4.5);
with eta lambda = 8e-6 a few thousand CPU steps would not move the encoder norm at all. The tiny
and small presets were therefore tuned by hand on this machine with 400-step runs (held-out MLM
loss at step 400): encoder lr 1.0 / 0.3 / 0.1 at wd 5e-3 and head (LAMB) lr 2e-3 / 1e-2 ->
``lr=0.1, weight_decay=1e-2, head_lr=1e-2`` (eta lambda = 1e-3; lr 1.0 gave an angular update
of ~0.1 rad/step and a loss stuck near the unigram level). BERT + AdamW: lr 1e-3 beat 3e-3.
These are NOT the paper's settings (``base`` keeps those).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Dict, Optional

from scaleinv import registry

MODELS = ("sibert", "bert")
# encoder optimizers: every name of the optimizer registry (scaleinv.registry); SGD_FAMILY are
# those trained with the piecewise-constant SGD schedule (no warmup by default)
OPTIMIZERS = registry.names()
SGD_FAMILY = tuple(n for n in OPTIMIZERS if registry.get(n).schedule == "sgd")
HEAD_OPTIMIZERS = ("lamb", "adamw")
HIDDEN_ACTS = ("gelu", "gelu_new", "relu")
# "f32": everything in float32; "bf16": mixed precision (sibert.model): matmuls and activations in
# bfloat16, float32 master weights, optimizer state, norms, clipping and loss
PRECISIONS = ("f32", "bf16")
PRESETS = ("mini", "tiny", "small", "base")


INT32_MAX = 2 ** 31 - 1    # largest steps / sizes (int32 step counter, int32 schedule arithmetic)
SEED_MAX = 2 ** 32 - 1     # seeds of jax.random.PRNGKey and numpy's generators (non-negative, 32 bits)
# vocab_size floors checked up front: wiki-offline's WordPiece alphabet (special tokens, characters,
# '##' + word-internal characters) is 551 tokens at heldout_fraction 0.05 (measured), 1024 leaves
# room for other splits; a directory's exact alphabet is checked before its tokenizer is trained
# (sibert.data.min_vocab_size)
MIN_VOCAB_WIKI, MIN_VOCAB = 1024, 16
EPS_MAX = 1e-2             # attn_eps / ln_eps: larger values wash out the activations they stabilise


class ConfigError(ValueError):
    """A bad configuration value; the message names the field and the allowed values."""


@dataclass
class TrainConfig:
    """All knobs of one pretraining run (flat, so ``--set key=value`` can reach every one)."""

    # model
    model: str = "sibert"                 # sibert | bert
    vocab_size: int = 8192                # WordPiece vocabulary trained on the corpus
    hidden: int = 128
    layers: int = 2
    heads: int = 2
    ffn: int = 512
    max_positions: int = 128              # learned position table size
    seq_len: int = 128                    # packed sequence length (<= max_positions)
    init_std: float = 0.02                # truncated normal std (BERT / paper)
    init_scale: float = 1.0               # multiplies every encoder parameter at init (robustness)
    dropout: float = 0.0
    attn_eps: float = 1e-30               # SI attention denominator max(sum_j relu(q_ij), eps)
    ln_eps: float = 1e-30                 # LayerNorm eps for SIBERT (tiny: keeps 0-homogeneity)
    hidden_act: str = "gelu"              # BERT's activation: gelu (exact erf, as BERT) | gelu_new (tanh)
    precision: str = "f32"                # f32 | bf16 (bf16 matmuls / activations, float32 weights + optimizer)
    # data
    source: str = "wiki-offline"          # wiki-offline | a directory of *.txt files
    heldout_fraction: float = 0.05        # fraction of ARTICLES held out (hash of the title)
    mask_prob: float = 0.15               # 80/10/10 masking of this fraction of tokens
    cache_dir: str = ""                   # tokenizer + token cache ("" -> $XDG_CACHE_HOME or ~/.cache/scaleinv)
    data_dir: str = ""                    # prepared token shards (scaleinv prepare-data; sibert.shards), read lazily;
                                          # "" -> tokenise `source` in memory (sibert.data); same batches either way
    # optimisation
    optimizer: str = "sgd-wd-rgc"         # encoder optimizer (bert + adamw: whole model)
    head_optimizer: str = "lamb"
    steps: int = 600
    batch_size: int = 32                  # global batch (sequences)
    lr: float = 0.1                       # encoder LR
    weight_decay: float = 1e-2            # encoder WD (lambda)
    clip_C: float = 2.0                   # relative global clipping constant C > 1
    momentum: float = 0.9                 # sgdm / rv-sgdm: heavy-ball momentum
    lr_drops: str = "0.6,0.9"             # SGD: LR /10 at these fractions of training
    wd_drops: str = ""                    # sgd-wd(-rgc): encoder WD /10 at these fractions ("" none)
    warmup_frac: float = 0.0              # encoder LR linear warmup fraction (recipes: SGD 0, AdamW 0.1)
    head_warmup_frac: float = 0.1         # head (LAMB / AdamW) LR linear warmup fraction
    head_lr: float = 1e-2
    head_weight_decay: float = 1e-2
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    # run
    seed: int = 0
    log_layer_angles: bool = True         # per-matrix angular update + norm of the encoder in metrics.jsonl
    eval_every: int = 100
    eval_batches: int = 8
    ckpt_every: int = 100
    keep_ckpts: int = 2
    fsdp: bool = False                    # shard large parameters over the data axis
    progress: bool = True

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def lr_drop_fractions(self):
        return tuple(float(x) for x in self.lr_drops.split(",") if x.strip())

    @property
    def wd_drop_fractions(self):
        return tuple(float(x) for x in self.wd_drops.split(",") if x.strip())


_PRESET_DIMS = {
    # The experiment preset (docs/results/sibert/, experiments/*.toml), sized by measurement on the
    # shared 2-core CPU: hidden 128, 2 layers, seq 64, vocabulary 2048, batch 64. Batch 16 ran
    # more tokens/s under load but BERT + AdamW (lr 3e-3) stalled 0.44 nat below the unigram
    # cross-entropy after 12k steps (192k sequences), while batch 64 left that plateau (0.67 nat
    # after 3k steps); eval over 16 fixed held-out batches (1,024 rows, ~10k predictions).
    "mini": dict(vocab_size=2048, hidden=128, layers=2, heads=2, ffn=512, max_positions=64,
                 seq_len=64, batch_size=64, steps=6000, eval_every=500, eval_batches=16, ckpt_every=500),
    "tiny": dict(vocab_size=8192, hidden=128, layers=2, heads=2, ffn=512, max_positions=128,
                 seq_len=128, batch_size=32, steps=1500, eval_every=100, ckpt_every=250),
    "small": dict(vocab_size=16384, hidden=256, layers=4, heads=4, ffn=1024, max_positions=256,
                  seq_len=128, batch_size=64, steps=20000, eval_every=500, ckpt_every=1000),
    # BERT-base dims; the paper's 1M steps, batch 256 (paper does not state batch; BERT's).
    "base": dict(vocab_size=30522, hidden=768, layers=12, heads=12, ffn=3072, max_positions=512,
                 seq_len=128, batch_size=256, steps=1_000_000, eval_every=10000, ckpt_every=10000),
}

_MODEL_DEFAULTS = {
    # tiny-tuned SGD values for small presets; the paper's values for base (see module doc).
    "sibert": dict(optimizer="sgd-wd-rgc", head_optimizer="lamb", lr=0.1, weight_decay=1e-2,
                   head_lr=1e-2, warmup_frac=0.0),
    "bert": dict(optimizer="adamw", head_optimizer="adamw", lr=1e-3, weight_decay=1e-2,
                 head_lr=1e-3, warmup_frac=0.1),
}


def preset(name: str, model: str = "sibert", optimizer: Optional[str] = None) -> TrainConfig:
    """The preset ``name`` for ``model``; ``optimizer`` (if given) replaces the model default
    and, for ``adamw``, its LR/WD defaults."""
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown value {name!r}; allowed: {', '.join(PRESETS)}")
    if model not in MODELS:
        raise ConfigError(f"model: unknown value {model!r}; allowed: {', '.join(MODELS)}")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer: unknown value {optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
    kw = dict(_PRESET_DIMS[name])
    kw.update(_MODEL_DEFAULTS[model])
    kw["model"] = model
    if name == "base" and model == "sibert":
        kw.update(lr=8e-4, weight_decay=1e-2, head_lr=8e-4, clip_C=4.0)  # paper: sqrt(C) = 2
    if optimizer is not None and optimizer != kw["optimizer"]:
        kw["optimizer"] = optimizer
        kw["warmup_frac"] = 0.0 if optimizer in SGD_FAMILY else 0.1
        if registry.get(optimizer).schedule == "adam":
            kw.update(lr=1e-3, weight_decay=1e-2)
        elif kw["model"] == "bert":  # SGD on BERT: same SGD LR/WD as the sibert tiny values
            kw.update(lr=_MODEL_DEFAULTS["sibert"]["lr"], weight_decay=_MODEL_DEFAULTS["sibert"]["weight_decay"])
        if registry.get(optimizer).weight_decay == "none":
            kw["weight_decay"] = 0.0
    return TrainConfig(**kw)


def _coerce(name: str, typ, raw: Any):
    """Convert ``raw`` (str from --set, or TOML value) to the field's type, or raise ConfigError."""
    tname = typ if isinstance(typ, str) else typ.__name__
    try:
        if tname == "bool":
            if isinstance(raw, bool):
                return raw
            s = str(raw).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tname == "int":
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, float):
                if not math.isfinite(raw) or raw != int(raw):
                    raise ValueError
                return int(raw)
            return int(str(raw).strip().replace("_", ""))
        if tname == "float":
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        return str(raw)
    except (TypeError, ValueError, OverflowError):
        allowed = {"int": "integers", "float": "numbers", "bool": "true, false"}.get(tname, "text")
        raise ConfigError(f"{name}: expected a value of type {tname}, got {raw!r}; allowed: {allowed}") from None


def apply_overrides(cfg: TrainConfig, overrides: Dict[str, Any]) -> TrainConfig:
    """Return a copy of ``cfg`` with ``overrides`` (key -> raw value) applied, type-checked."""
    types = {f.name: f.type for f in fields(TrainConfig)}
    kw = cfg.to_dict()
    for key, raw in overrides.items():
        if key not in types:
            close = [k for k in types if k.split("_")[0] == key.split("_")[0]]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}; allowed keys: {', '.join(sorted(types))}")
        kw[key] = _coerce(key, types[key], raw)
    return TrainConfig(**kw)


def parse_set_args(items) -> Dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (ConfigError on a missing '=')."""
    out = {}
    for it in items or ():
        if "=" not in it:
            raise ConfigError(f"--set expects key=value, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def load_toml(path) -> Dict[str, Any]:
    """Read a TOML file of overrides (top-level keys, or a [train] table)."""
    import tomllib
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"--config: {str(path)!r} is a directory; allowed: a TOML file") from None
    except OSError as e:
        raise ConfigError(f"--config: cannot read {str(path)!r} ({e.strerror or e}); allowed: a readable TOML file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"--config: {str(path)!r} is not valid TOML (not UTF-8 text: {e.reason})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from None
    if "train" in data and isinstance(data["train"], dict):
        data = {**{k: v for k, v in data.items() if k != "train"}, **data["train"]}
    return data


def validate(cfg: TrainConfig) -> TrainConfig:
    """Raise :class:`ConfigError` naming the first bad field and its allowed values."""
    def need(cond, msg):
        if not cond:
            raise ConfigError(msg)

    need(cfg.model in MODELS, f"model: unknown value {cfg.model!r}; allowed: {', '.join(MODELS)}")
    need(cfg.optimizer in OPTIMIZERS,
         f"optimizer: unknown value {cfg.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
    need(cfg.head_optimizer in HEAD_OPTIMIZERS,
         f"head_optimizer: unknown value {cfg.head_optimizer!r}; allowed: {', '.join(HEAD_OPTIMIZERS)}")
    for name in ("vocab_size", "hidden", "layers", "heads", "ffn", "max_positions", "seq_len",
                 "steps", "batch_size", "eval_every", "eval_batches", "ckpt_every", "keep_ckpts"):
        v = getattr(cfg, name)
        need(isinstance(v, int) and v >= 1, f"{name}: must be an integer >= 1, got {v!r}")
        # the step counter and the schedules' step arithmetic are int32 on the device
        need(v <= INT32_MAX, f"{name}: {v} is too large; allowed: 1..{INT32_MAX}")
    need(isinstance(cfg.seed, int) and not isinstance(cfg.seed, bool) and 0 <= cfg.seed <= SEED_MAX,
         f"seed: must be a non-negative 32-bit integer, got {cfg.seed!r}; allowed: 0..{SEED_MAX}")
    low = MIN_VOCAB_WIKI if cfg.source == "wiki-offline" else MIN_VOCAB
    need(cfg.vocab_size >= low,
         f"vocab_size: {cfg.vocab_size} is too small for source {cfg.source!r} (the tokenizer's alphabet needs "
         f"more); allowed: {low}..{INT32_MAX}")
    need(cfg.hidden % cfg.heads == 0,
         f"heads: must divide hidden={cfg.hidden}; allowed: divisors of hidden, got {cfg.heads}")
    need(cfg.seq_len <= cfg.max_positions,
         f"seq_len: must be <= max_positions={cfg.max_positions} (learned position table), got {cfg.seq_len}")
    need(cfg.seq_len >= 8, f"seq_len: must be >= 8, got {cfg.seq_len}")
    for name in ("lr", "head_lr", "init_std", "init_scale"):
        v = getattr(cfg, name)
        need(math.isfinite(v) and v > 0, f"{name}: must be a finite number > 0, got {v!r}")
    for name in ("weight_decay", "head_weight_decay"):
        v = getattr(cfg, name)
        need(math.isfinite(v) and v >= 0, f"{name}: must be a finite number >= 0, got {v!r}")
    need(math.isfinite(cfg.clip_C) and cfg.clip_C > 1,
         f"clip_C: must be > 1 (talk default 2; paper sqrt(C)=2 i.e. 4), got {cfg.clip_C!r}")
    need(0 <= cfg.momentum < 1, f"momentum: must be in [0, 1), got {cfg.momentum!r}")
    if registry.get(cfg.optimizer).weight_decay == "required":
        need(cfg.weight_decay > 0, f"weight_decay: must be > 0 for optimizer {cfg.optimizer!r} "
                                   f"(use optimizer=sgd for no WD), got {cfg.weight_decay!r}")
        need(cfg.lr * cfg.weight_decay < 1,
             f"lr * weight_decay must be < 1 for SGD+WD, got {cfg.lr * cfg.weight_decay!r}")
    need(0 < cfg.mask_prob < 1, f"mask_prob: must be in (0, 1), got {cfg.mask_prob!r}")
    need(0 < cfg.heldout_fraction < 1, f"heldout_fraction: must be in (0, 1), got {cfg.heldout_fraction!r}")
    need(0 <= cfg.dropout < 1, f"dropout: must be in [0, 1), got {cfg.dropout!r}")
    need(0 <= cfg.warmup_frac < 1, f"warmup_frac: must be in [0, 1), got {cfg.warmup_frac!r}")
    need(0 <= cfg.head_warmup_frac < 1, f"head_warmup_frac: must be in [0, 1), got {cfg.head_warmup_frac!r}")
    need(0 < cfg.adam_b1 < 1 and 0 < cfg.adam_b2 < 1, "adam_b1/adam_b2: must be in (0, 1)")
    for name in ("attn_eps", "ln_eps"):   # inf would flatten every attention row / LayerNorm output to 0
        v = getattr(cfg, name)
        need(math.isfinite(v) and 0 < v <= EPS_MAX,
             f"{name}: must be a finite number in (0, {EPS_MAX:g}], got {v!r}; allowed: (0, {EPS_MAX:g}] "
             f"(default 1e-30)")
    need(cfg.precision in PRECISIONS,
         f"precision: unknown value {cfg.precision!r}; allowed: {', '.join(PRECISIONS)}")
    need(cfg.hidden_act in HIDDEN_ACTS,
         f"hidden_act: unknown value {cfg.hidden_act!r}; allowed: {', '.join(HIDDEN_ACTS)}")
    try:
        drops = cfg.lr_drop_fractions
    except ValueError:
        raise ConfigError(f"lr_drops: expected comma-separated fractions in (0, 1), got {cfg.lr_drops!r}") from None
    need(all(0 < d < 1 for d in drops) and list(drops) == sorted(drops),
         f"lr_drops: expected increasing fractions in (0, 1), got {cfg.lr_drops!r}")
    try:
        wd_drops = cfg.wd_drop_fractions
    except (ValueError, AttributeError):
        raise ConfigError(f"wd_drops: expected comma-separated fractions in (0, 1), got {cfg.wd_drops!r}") from None
    need(all(0 < d < 1 for d in wd_drops) and list(wd_drops) == sorted(wd_drops),
         f"wd_drops: expected increasing fractions in (0, 1), got {cfg.wd_drops!r}")
    need(not wd_drops or cfg.optimizer in ("sgd-wd-rgc", "sgd-wd"),
         f"wd_drops: only for optimizer sgd-wd-rgc or sgd-wd; allowed for {cfg.optimizer!r}: \"\" (none), "
         f"got {cfg.wd_drops!r}")
    need(cfg.source == "wiki-offline" or cfg.source.strip() != "",
         "source: allowed: 'wiki-offline' or a directory of .txt files")
    return cfg
