"""Training setups, one sub-package per paper (config, data, model, trainer, presets)."""
