"""sibert: SIBERT (the paper's scale-invariant BERT) and a BERT baseline, trained with the
library's optimizers (``scaleinv train`` / ``scaleinv plot``; see sibert/README.md).

Modules:
  config          -- TrainConfig, presets, --set / TOML overrides, validation
  model           -- BERT and SIBERT in one flax model file (``ModelConfig.scale_invariant``)
  data            -- real-text MLM pipeline: corpus -> WordPiece -> packed, masked batches
  shards          -- ``scaleinv prepare-data``: token shards on disk, read lazily, each process its rows
  train           -- optimizer factory, mesh sharding, per-step diagnostics, the training loop
  checkpoints     -- orbax checkpoints, restored from the newest intact one
  resume          -- what ``--resume`` may change, and the check that nothing else changed
  runlock         -- one trainer per run directory (a lock file)
  preflight       -- checks before a run writes anything (output path, memory)
  runs            -- a run directory is self-contained (evaluation and export read only it)
  evaluate        -- held-out MLM evaluation of text from a run directory
  hf              -- Hugging Face interop: our BERT <-> ``transformers.BertForMaskedLM``, tokenizer files
  export          -- export a run to the Hugging Face format (``scaleinv export``)
  finetune        -- downstream check: fine-tune a pretrained encoder on a tiny sentence task
  devices         -- device mesh helpers (and fake CPU devices for tests)
  experiment      -- the experiment driver behind the README's SIBERT tables
  audit_factories -- the SIBERT / BERT models as ``scaleinv audit`` factories

Imports the library ``scaleinv`` only (docs/ARCHITECTURE.md).
"""
