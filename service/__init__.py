"""The pipeline layer of ocr-translate-serve: what every endpoint does, without HTTP or Serve.

`service.py` composes the catalogue (`catalogue.py`), the pipeline (`pipeline.py`) and the manual
translations (`manual.py`) over one store (`store.py`, its Alembic `migrations/`); `stages.py` is how
the pipeline calls the model deployments. Importable and testable without Ray; `deployments/` wraps it
for Serve. It imports the leaf modules (`core/`), `models_registry` and `inference`, never a later layer.
"""
