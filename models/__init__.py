"""The named model configurations (TOML, not code): this folder ships inside the wheel as
``bayes_sd.model.configurations``. Load one with ``LatencyModel("name")`` or
:func:`bayes_sd.model.config.load_config`.
"""
