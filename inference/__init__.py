"""The inference layer: hosting a model on a Ray worker and the work around its backend, without Serve.

A Serve model replica (`deployments/`) and a bulk run's Ray Data actor (`bulk/`) both load their models
through `worker.py` and run `detection.py`, `reading.py` and `translation.py` on batches of items
grouped by `grouping.py`, so a page gets the same blocks, texts and translations either way; the
pipeline (`service/`) takes `reading.py`'s crops and line joins. It imports `core/` and
`models_registry/` only: no Serve, no database.
"""
