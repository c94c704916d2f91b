"""sibert: SIBERT (the paper's scale-invariant BERT) and a BERT baseline, trained with the
library's optimizers (``scaleinv train`` / ``scaleinv plot``; see sibert/README.md).

Modules:
  config          -- TrainConfig, presets, --set / TOML overrides, validation
  model           -- BERT and SIBERT in one flax model file (``ModelConfig.scale_invariant``)
  data            -- real-text MLM pipeline: corpus -> WordPiece -> packed, masked batches
  train           -- optimizer factory, mesh sharding, per-step diagnostics, orbax checkpoints, resume
  devices         -- device mesh helpers (and fake CPU devices for tests)
  experiment      -- the experiment driver behind the README's SIBERT tables
  audit_factories -- the SIBERT / BERT models as ``scaleinv audit`` factories

Imports the library ``scaleinv`` only (docs/ARCHITECTURE.md).
"""
