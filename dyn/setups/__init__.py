"""Paper setups: each sub-package is one paper's experiment (config, data, model, objective, trainer, presets),
registered with :func:`dyn.setups.base.register_setup` when imported. The registry, presets and overrides are in
:mod:`dyn.setups.base`."""
