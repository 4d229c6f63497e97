"""Fuzzing the HTTP API through the real app.

Schemathesis drives our own OpenAPI description (`deployments.http_api`) with valid and invalid
requests for every operation; hypothesis throws arbitrary JSON, bytes and query strings at every
endpoint. Nothing may answer 500, every answer must be one the description lists, and a rejected
request must leave the store exactly as it was. Example counts are fixed and derandomized, so the
run is bounded in time and repeatable.
"""

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import delete

from deployments.handlers import ENDPOINTS
from deployments.http_api import openapi_document
from service.store import GlossaryRow
from tests.support.live import AUTH, select_models

CONFIG = SchemathesisConfig.from_dict({"generation": {"mode": "all", "max-examples": 15, "deterministic": True}})
schema = schemathesis.openapi.from_dict(openapi_document(ENDPOINTS), config=CONFIG)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def fuzzed(live):
    """The live app with models selected; its selection and plugin state are put back afterwards, and
    the glossary terms it was sent are forgotten (they would change later tests' translations)."""
    select_models(live)
    store = live.store()
    selection, disabled = store.selection(), store.disabled_families()
    yield live
    store.set_disabled_families(disabled)
    store.update_selection(selection.lang_src, selection.lang_dst, selection.models)
    with store.engine.begin() as connection:
        connection.execute(delete(GlossaryRow))


def state(live) -> tuple:
    store = live.store()
    return live.row_counts(), store.selection(), store.disabled_families()


def documented_statuses(path: str, method: str) -> set[int]:
    operation = openapi_document(ENDPOINTS)["paths"][path][method.lower()]
    return {int(status) for status in operation["responses"]}


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_openapi_description_says(case, fuzzed):
    before = state(fuzzed)
    response = case.call(base_url=fuzzed.url, headers=AUTH, timeout=120)
    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        assert state(fuzzed) == before, f"{case.method} {case.path} answered {response.status_code} but stored"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
BODY_KEYS = sorted({key for e in ENDPOINTS if e.body for key in e.body.model_fields})
POSTS = [e for e in ENDPOINTS if e.method == "POST"]
GETS = [e for e in ENDPOINTS if e.method == "GET"]


def check_answer(live, endpoint, response: httpx.Response, before: tuple) -> None:
    assert response.status_code in documented_statuses(endpoint.path, endpoint.method), response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/json"
        assert isinstance(response.json()["error"], str)
        assert state(live) == before


@FUZZ
@given(endpoint=st.sampled_from(POSTS),
       body=JSON | st.dictionaries(st.sampled_from(BODY_KEYS), JSON, max_size=5))
def test_any_json_body_gets_a_documented_answer(fuzzed, endpoint, body):
    before = state(fuzzed)
    response = fuzzed.http.post(endpoint.path, content=json.dumps(body), headers={"content-type": "application/json"})
    check_answer(fuzzed, endpoint, response, before)


@FUZZ
@given(endpoint=st.sampled_from(POSTS), raw=st.binary(max_size=200),
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]))
def test_any_bytes_get_a_documented_answer(fuzzed, endpoint, raw, content_type):
    before = state(fuzzed)
    response = fuzzed.http.post(endpoint.path, content=raw, headers={"content-type": content_type})
    check_answer(fuzzed, endpoint, response, before)


@FUZZ
@given(endpoint=st.sampled_from(GETS),
       query=st.dictionaries(st.sampled_from(["text", "md5", "x"]) | st.text(max_size=8), st.text(max_size=40),
                             max_size=3))
def test_any_query_gets_a_documented_answer(fuzzed, endpoint, query):
    before = state(fuzzed)
    response = fuzzed.http.get(endpoint.path, params=query)
    check_answer(fuzzed, endpoint, response, before)
