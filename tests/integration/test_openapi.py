"""A schemathesis run against docs/openapi.yaml: the HTTP functions in this process (`FunctionHost.wsgi`, a WSGI
adapter over the routing every test uses, loaded with `schemathesis.openapi.from_wsgi`) on real Azurite, with the
OpenID stand-in for Graph's notification tokens.

- `test_every_operation`: the examples, coverage and fuzzing phases for each operation.
- `test_linked_sequences`: the stateful phase, sequences that follow the document's links from `POST /api/calls`
  to `GET` and `DELETE /api/calls/{callId}` (schemathesis' own inference of links is off: the document's are
  what a client generator sees), each sequence on an empty table.

Every answer goes through `tests.reference.validate_answer`: not_a_server_error, status_code_conformance,
content_type_conformance, response_schema_conformance and response_headers_conformance. Bounded: `EXAMPLES` per
operation and phase, `STEPS` per sequence, `DEADLINE` per example; about 20 s here.

Notifications: a request as generated carries the function key and a valid Graph token, so the fuzzed bodies
reach the app (202 with counts, 400 for a bad payload); the cases in which schemathesis changes or drops the
`Authorization` header, or the function key, get the app's `401 invalidToken` or the host's bare 401.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

import function_app
from shared.context import get_context
from tests.conftest import ContextFactory
from tests.host import FunctionHost
from tests.reference import validate_answer
from tests.standins.openid import OpenIdStandin

pytestmark = pytest.mark.integration

CLIENT_ID = "00000000-0000-0000-0000-0000000c0de1"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
FUNCTION_KEY = "schemathesis-function-key"
EXAMPLES = 40  # per operation and phase
STEPS = 6  # calls in one stateful sequence
DEADLINE = timedelta(seconds=10)  # one example: its requests to Azurite, with room for a busy machine
CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {"max-examples": EXAMPLES},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": True, "max-steps": STEPS, "inference": {"algorithms": []}},
        },
    }
)
schema = schemathesis.openapi.from_wsgi("/openapi.yaml", FunctionHost.of(function_app.app).wsgi, config=CONFIG)
GRAPH_TOKEN = "graph-token-of-the-stand-in"  # in the generated cases; the real token is put in at call time
_graph_token: dict[str, str] = {}


@schema.auth(refresh_interval=None)
class Keys:
    """A function key on every request; on notifications, Graph's token (`with_graph_token` puts a valid one of the
    OpenID stand-in in its place as the request goes out: it cannot be signed before the stand-in runs)."""

    def get(self, case: Any, context: Any) -> str:
        return FUNCTION_KEY

    def set(self, case: Any, key: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "x-functions-key": key}
        if case.operation.path == "/api/notifications":
            case.headers["Authorization"] = "Bearer " + GRAPH_TOKEN


def with_graph_token(case: Any) -> None:
    """The stand-in's token in place of `GRAPH_TOKEN`; a case whose `Authorization` schemathesis changed keeps it."""
    if (case.headers or {}).get("Authorization") == "Bearer " + GRAPH_TOKEN:
        case.headers["Authorization"] = "Bearer " + _graph_token["value"]


@pytest.fixture(autouse=True)
def app(make_context: ContextFactory, openid: OpenIdStandin) -> None:
    """The functions on this test's own table, trusting the OpenID stand-in's keys for the audience CLIENT_ID."""
    make_context(install=True, GRAPH_CLIENT_ID=CLIENT_ID, GRAPH_NOTIFICATION_OPENID_URL=openid.config_url)
    _graph_token["value"] = openid.sign(openid.claims(audience=CLIENT_ID, tenant=TENANT))


@schema.parametrize()
@hypothesis.settings(max_examples=EXAMPLES, deadline=DEADLINE, suppress_health_check=list(hypothesis.HealthCheck))
def test_every_operation(case: Any) -> None:
    with_graph_token(case)
    validate_answer(case, case.call())


def test_linked_sequences() -> None:
    answered: set[tuple[str, str, int]] = set()  # (method, callId, status) of the calls the run registered

    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            with_graph_token(case)

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            call_id = (case.path_parameters or {}).get("callId")
            if case.method == "POST" and case.path == "/api/calls" and response.status_code == 201:
                registered.add(json.loads(response.content)["callId"])
            elif call_id in registered:
                answered.add((case.method, call_id, response.status_code))

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            validate_answer(case, response)

        def teardown(self) -> None:
            """An empty table for the next sequence: hypothesis replays sequences and expects the same answers."""
            table = get_context().storage.table()
            for entity in table.list_entities(select=["PartitionKey", "RowKey"]):
                table.delete_entity(entity["PartitionKey"], entity["RowKey"])

    registered: set[str] = set()
    Sequences.run(
        settings=hypothesis.settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=DEADLINE,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
    # the document's links were followed: a call the run registered was read and deleted through them
    assert {(method, status) for method, _, status in answered} >= {("GET", 200), ("DELETE", 204)}, answered
