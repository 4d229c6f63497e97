"""The pipeline layer of ocr-translate-serve: what every endpoint does, without HTTP or Serve.

`service.py` composes the catalogue (`catalogue.py`), the pipeline (`pipeline.py`) and the manual
translations (`manual.py`) over one store (`store.py`, its Alembic `migrations/`); `stages.py` is the
model deployments' work around their backends. Importable and testable without Ray; `deployments/`
wraps it for Serve. It imports the leaf modules (`core/`) and `models_registry`, never a later layer.

This file imports nothing: model replicas import `service.stages`, and must not import the store.
"""
