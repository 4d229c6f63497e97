"""The API's description, held against a snapshot: a refactor leaves it as it was, and a change of the
API shows in review as a change of tests/unit/snapshots/openapi.json. After a change on purpose, write the
snapshot again with `OCR_SERVE_WRITE_SNAPSHOT=1 .venv/bin/python -m pytest tests/unit/test_openapi_snapshot.py`."""

import json
import os
from pathlib import Path

from deployments.handlers import ENDPOINTS
from deployments.http_api import openapi_document

SNAPSHOT = Path(__file__).parent / "snapshots" / "openapi.json"
WRITE_ENV = "OCR_SERVE_WRITE_SNAPSHOT"


def test_the_openapi_document_matches_its_snapshot():
    document = json.loads(json.dumps(openapi_document(ENDPOINTS)))  # as served: JSON types only
    if os.environ.get(WRITE_ENV) == "1":
        SNAPSHOT.write_text(json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    assert SNAPSHOT.is_file(), f"no snapshot yet: run with {WRITE_ENV}=1 to write it"
    assert document == json.loads(SNAPSHOT.read_text()), (
        f"the API's description changed; if on purpose, write the snapshot again ({WRITE_ENV}=1)")
