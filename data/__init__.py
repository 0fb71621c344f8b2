"""The bundled data files (not code): this folder ships inside the wheel as ``bayes_sd.data``.

Read them with :mod:`bayes_sd.datasets`; provenance in ``real/SOURCES.md`` and ``synthetic/README.md``.
"""
