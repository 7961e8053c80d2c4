"""Telemetry: when the Azure Monitor distro is configured, with what, and the custom dimensions we log.

Nothing here exports: the distro's `configure_azure_monitor` is replaced by a recorder.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.errors import InvalidAuthenticationString
from shared.settings import load_settings
from shared.summary import TickSummary
from shared.telemetry import (
    EntraAuthentication,
    Telemetry,
    call_fields,
    parse_authentication_string,
    summary_fields,
    telemetry_options,
)

ROOT = Path(__file__).resolve().parents[2]
CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://example.invalid/"
CLIENT_ID = "3d9f1e2a-0000-4000-8000-0000000000a1"


class Recorder:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.credentials: list[str | None] = []
        self.error = error

    def configure(self, **options: Any) -> None:
        self.calls.append(options)
        if self.error is not None:
            raise self.error

    def credential(self, client_id: str | None) -> Any:
        self.credentials.append(client_id)
        return ("credential", client_id)


def telemetry(recorder: Recorder) -> Telemetry:
    return Telemetry(configure=recorder.configure, credential_factory=recorder.credential)


# --- APPLICATIONINSIGHTS_AUTHENTICATION_STRING ---------------------------------------------------
@pytest.mark.parametrize("value", [None, "", "   "])
def test_no_authentication_string_means_key_based_ingestion(value):
    assert parse_authentication_string(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Authorization=AAD", EntraAuthentication(None)),
        (f"Authorization=AAD;ClientId={CLIENT_ID}", EntraAuthentication(CLIENT_ID)),
        (f"authorization=aad; clientid={CLIENT_ID.upper()};", EntraAuthentication(CLIENT_ID)),
        (f" ClientId = {CLIENT_ID} ; Authorization = AAD ", EntraAuthentication(CLIENT_ID)),
    ],
)
def test_authentication_string_names_a_managed_identity(value, expected):
    assert parse_authentication_string(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "Authorization=Key",
        f"ClientId={CLIENT_ID}",
        "Authorization=AAD;ClientId=not-a-guid",
        "Authorization",
        "Authorization=AAD;ClientId=",
        "Authorization=AAD;Authorization=AAD",
        "Authorization=AAD;Secret=x",
    ],
)
def test_malformed_authentication_string_is_refused(value):
    with pytest.raises(InvalidAuthenticationString, match="APPLICATIONINSIGHTS_AUTHENTICATION_STRING"):
        parse_authentication_string(value)


# --- settings -----------------------------------------------------------------------------------
def test_settings_read_the_application_insights_settings_and_keep_the_connection_string_out_of_repr():
    settings = load_settings(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD",
            "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "True",
        }
    )
    assert settings.appinsights_connection_string == CONNECTION
    assert settings.appinsights_authentication_string == "Authorization=AAD"
    assert settings.worker_telemetry is True
    assert "InstrumentationKey" not in repr(settings)
    empty = load_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": " "})
    assert empty.appinsights_connection_string is None and empty.worker_telemetry is False


# --- when and how the distro is configured ------------------------------------------------------
def test_not_configured_without_a_connection_string():
    recorder = Recorder()
    setup = telemetry(recorder)
    assert setup.configure(load_settings({})) is False
    assert recorder.calls == [] and setup.enabled is False
    assert telemetry_options(load_settings({})) is None


def test_configured_once_with_the_connection_string_and_the_apps_own_loggers():
    recorder = Recorder()
    setup = telemetry(recorder)
    settings = load_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION})

    assert setup.configure(settings) is True
    assert setup.configure(settings) is True  # idempotent: still one configuration
    [options] = recorder.calls
    assert options["connection_string"] == CONNECTION
    assert options["logger_name"] == "shared"
    assert options["instrumentation_options"]["azure_sdk"] == {"enabled": False}
    assert options["instrumentation_options"]["requests"] == {"enabled": True}
    assert "credential" not in options and recorder.credentials == []


def test_entra_authentication_passes_a_managed_identity_credential():
    recorder = Recorder()
    settings = load_settings(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"Authorization=AAD;ClientId={CLIENT_ID}",
        }
    )
    assert telemetry(recorder).configure(settings) is True
    assert recorder.credentials == [CLIENT_ID]
    assert recorder.calls[0]["credential"] == ("credential", CLIENT_ID)


def test_system_assigned_identity_when_the_authentication_string_has_no_client_id():
    recorder = Recorder()
    settings = load_settings(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD",
        }
    )
    telemetry(recorder).configure(settings)
    assert recorder.credentials == [None]


def test_the_real_credential_factory_builds_a_managed_identity_credential_without_io():
    from azure.identity import ManagedIdentityCredential

    settings = load_settings(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"Authorization=AAD;ClientId={CLIENT_ID}",
        }
    )
    options = telemetry_options(settings)
    assert options is not None
    assert isinstance(options["credential"], ManagedIdentityCredential)


def test_a_malformed_authentication_string_is_logged_by_name_and_nothing_is_configured(caplog):
    recorder = Recorder()
    settings = load_settings(
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION, "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Key=1"}
    )
    with caplog.at_level(logging.ERROR, logger="shared.telemetry"):
        assert telemetry(recorder).configure(settings) is False
    assert recorder.calls == []
    assert "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" in caplog.text


def test_not_configured_twice_when_the_worker_sets_the_distro_up_itself():
    recorder = Recorder()
    settings = load_settings(
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION, "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true"}
    )
    assert telemetry(recorder).configure(settings) is False
    assert recorder.calls == []


def test_a_failing_distro_never_stops_the_app(caplog):
    recorder = Recorder(error=ValueError("Invalid instrumentation key"))
    setup = telemetry(recorder)
    settings = load_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION})
    with caplog.at_level(logging.ERROR, logger="shared.telemetry"):
        assert setup.configure(settings) is False
        assert setup.configure(settings) is False  # tried once per process, not per invocation
    assert len(recorder.calls) == 1
    assert "telemetry not configured" in caplog.text and "ValueError" in caplog.text
    assert "Invalid instrumentation key" not in caplog.text  # the exception's text may hold the key


def test_nothing_is_configured_at_import_or_without_the_connection_string():
    """Importing the app and building its context neither imports nor configures the distro."""
    code = (
        "import sys, function_app\n"
        "from shared.context import get_context\n"
        "assert 'azure.monitor.opentelemetry' not in sys.modules, 'imported at import time'\n"
        "get_context()\n"
        "assert 'azure.monitor.opentelemetry' not in sys.modules, 'configured without a connection string'\n"
    )
    environ = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    process = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    assert process.returncode == 0, process.stderr


# --- custom dimensions --------------------------------------------------------------------------
def test_summary_fields_are_the_summary_in_camel_case_with_an_outcome():
    summary = TickSummary(calls=5, succeeded=3, ended=1, failed=1, retries=2, at_risk=1, seconds=1.23456)
    fields = summary_fields(summary)
    assert fields["event"] == "keepaliveTick"
    assert (fields["calls"], fields["succeeded"], fields["ended"], fields["failed"]) == (5, 3, 1, 1)
    assert fields["atRisk"] == 1 and fields["dryRun"] is False and fields["complete"] is True
    assert fields["seconds"] == 1.235
    assert fields["outcome"] == "failures"
    assert summary_fields(TickSummary(calls=2, succeeded=2))["outcome"] == "ok"
    assert summary_fields(TickSummary(calls=2, failed=1, complete=False))["outcome"] == "incomplete"


def test_call_fields_leave_out_what_is_unknown():
    fields = call_fields(
        "keepaliveFailed", call_id="c1", tenant_id=None, outcome="failed", status=None, error="timeout", attempts=4
    )
    assert fields == {
        "event": "keepaliveFailed",
        "callId": "c1",
        "outcome": "failed",
        "error": "timeout",
        "attempts": 4,
    }


def test_fields_can_be_passed_as_logging_extra(caplog):
    """No key collides with a LogRecord attribute (logging would raise KeyError)."""
    log = logging.getLogger("shared.keepalive")
    extra = call_fields(
        "keepaliveFailed",
        call_id="c1",
        tenant_id="t",
        outcome="failed",
        status=503,
        error="503 ServiceUnavailable",
        attempts=4,
        retries=3,
        consecutive_failures=2,
        seconds=1.5,
        last_success="2026-01-01T00:00:00.000Z",
        minutes=31,
    )
    with caplog.at_level(logging.INFO, logger="shared"):
        log.warning("keepalive failed callId=%s", "c1", extra=extra)
        log.info("keepalive tick calls=1", extra=summary_fields(TickSummary(calls=1, failed=1)))
    failed, tick = caplog.records
    assert failed.callId == "c1" and failed.status == 503 and failed.consecutiveFailures == 2
    assert tick.event == "keepaliveTick" and tick.outcome == "failures"
    assert failed.getMessage() == "keepalive failed callId=c1"


def test_the_distros_logging_handler_turns_the_fields_into_attributes():
    """What the distro does with a record of ours: the message stays, the fields become its attributes
    (customDimensions in Application Insights). An in-memory exporter stands in for Azure Monitor."""
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=provider)
    log = logging.getLogger("shared.keepalive")
    log.addHandler(handler)
    try:
        log.warning(
            "keepalive failed callId=%s status=%s",
            "c1",
            503,
            extra=call_fields("keepaliveFailed", call_id="c1", tenant_id="t1", outcome="failed", status=503),
        )
    finally:
        log.removeHandler(handler)
        provider.shutdown()
    [exported] = exporter.get_finished_logs()
    record = getattr(exported, "log_record", exported)
    assert record.body == "keepalive failed callId=c1 status=503"
    attributes = dict(record.attributes or {})
    assert {k: attributes[k] for k in ("event", "callId", "tenantId", "outcome", "status")} == {
        "event": "keepaliveFailed",
        "callId": "c1",
        "tenantId": "t1",
        "outcome": "failed",
        "status": 503,
    }
