"""The inference layer: hosting a model on a Ray worker, without Serve.

A Serve model replica (`deployments/`) and a bulk run's Ray Data actor (`bulk/`) both load their models
through `worker.py`. It imports `core/` and `models_registry/` only: no Serve, no database.
"""
