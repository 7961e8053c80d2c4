"""Storage problems say what is wrong: a malformed setting, a refused identity or key, a certificate not
verified, and no SAS signature in urllib3's DEBUG lines. Real Azurite and a real TLS server throughout."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.data.tables import AccountSasPermissions, ResourceTypes, generate_account_sas

from shared import context as context_module
from shared.connection_string import StorageSettings
from shared.context import Context
from shared.errors import StorageAccessDenied, StorageMisconfigured, StorageTlsError, StorageUnavailable
from shared.settings import Settings
from shared.storage import Storage
from tests.azurite import ACCOUNT, KEY
from tests.host import body_of
from tests.integration.cli_harness import App
from tests.integration.test_http_api import assert_error

pytestmark = pytest.mark.integration

WRONG_KEY = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
MALFORMED = [
    "garbage",
    "AccountName=x;AccountKey=not base64!",
    "UseDevelopmentStorage=false",
    "TableEndpoint=ftp://host;QueueEndpoint=ftp://host;SharedAccessSignature=sv=1",
    "DefaultEndpointsProtocol=https;AccountName=x",
]


def _api(ctx: Context, host) -> object:
    previous = context_module.install(ctx)
    try:
        return host.request("POST", "/api/calls", body={"callId": "c1"})
    finally:
        context_module.install(previous)


@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_connection_string_is_503_naming_the_setting_and_never_quoted(value, make_context, host, caplog):
    ctx = make_context(AzureWebJobsStorage=value)
    settings = ctx.settings
    assert settings.storage is None and any("AzureWebJobsStorage" in p for p in settings.storage_problems)

    with caplog.at_level(logging.ERROR, logger="shared.storage"):
        response = _api(ctx, host)

    assert_error(response, 503, "storageUnavailable")
    message = body_of(response)["error"]["message"]
    assert "AzureWebJobsStorage" in message and value not in message
    assert response.headers.get("Retry-After")
    assert all(value not in r.getMessage() for r in caplog.records if len(value) > 12)


def test_a_connection_string_the_sdk_refuses_is_storage_misconfigured():
    storage = Storage(Settings(storage=StorageSettings(connection_string="garbage")))  # past the settings check
    with pytest.raises(StorageMisconfigured, match="AzureWebJobsStorage"):
        storage.table()
    with pytest.raises(StorageMisconfigured, match="AzureWebJobsStorage"):
        storage.queue("q")


def test_the_command_line_exits_2_naming_the_setting_without_a_traceback(tmp_path: Path):
    app = App(tmp_path, {"AzureWebJobsStorage": "AccountName=x;AccountKey=not base64!", "GRAPH_DRY_RUN": "true"})
    app.write_settings()
    for args in (("calls", "list"), ("tick",), ("--json", "calls", "show", "c1")):
        run = app.run(*args)
        assert run.code == 2, (args, run.stderr)
        assert "AzureWebJobsStorage" in run.stderr and "Traceback" not in run.stderr
        assert "not base64!" not in run.stderr


SIG = "CANARYsig0Zq7%2Bx%3D"
SAS_IDENTITY = {  # identity-based storage with a SAS pasted into an http service URI: two mistakes, one secret
    "AzureWebJobsStorage": None,
    "AzureWebJobsStorage__tableServiceUri": f"http://acct.table.core.windows.net/?sv=2024-08-04&ss=t&sig={SIG}",
    "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
}


def test_an_identity_based_setting_problem_is_named_and_its_sas_reaches_no_body_log_or_message(
    make_context, host, caplog, tmp_path: Path
):
    ctx = make_context(**SAS_IDENTITY)
    with caplog.at_level(logging.DEBUG):
        response = _api(ctx, host)
        with pytest.raises(StorageMisconfigured) as raised:
            ctx.storage.queue(ctx.settings.cleanup_queue_name)

    assert_error(response, 503, "storageUnavailable")
    message = body_of(response)["error"]["message"]
    assert "AzureWebJobsStorage__tableServiceUri" in message and SIG not in message
    assert SIG not in raised.value.message
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("AzureWebJobsStorage__tableServiceUri" in line for line in errors)
    assert not [r.getMessage() for r in caplog.records if SIG in r.getMessage()]

    app = App(tmp_path, {k: v for k, v in SAS_IDENTITY.items() if v is not None} | {"GRAPH_DRY_RUN": "true"})
    app.write_settings()
    for args in (("calls", "list"), ("--json", "calls", "show", "c1")):
        run = app.run(*args)
        assert run.code == 2, (args, run.stderr)
        assert "AzureWebJobsStorage__tableServiceUri" in run.stderr and "Traceback" not in run.stderr
        assert SIG not in run.stderr and SIG not in run.stdout


def _wrong_key(azurite) -> str:
    return azurite.connection_string.replace(KEY, WRONG_KEY)


def test_a_wrong_key_is_a_configuration_error_naming_the_role(azurite, make_context, host, caplog):
    ctx = make_context(AzureWebJobsStorage=_wrong_key(azurite))

    with caplog.at_level(logging.ERROR, logger="shared.storage"):
        response = _api(ctx, host)
        with pytest.raises(StorageAccessDenied) as queue_refused:
            ctx.storage.queue(ctx.settings.cleanup_queue_name)

    assert_error(response, 503, "storageUnavailable")
    assert "Storage Table Data Contributor" in body_of(response)["error"]["message"]
    assert "try again later" not in body_of(response)["error"]["message"]
    assert queue_refused.value.role == "Storage Queue Data Contributor"
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("configuration error" in line and "Storage Table Data Contributor" in line for line in lines)
    assert any("configuration error" in line and "Storage Queue Data Contributor" in line for line in lines)
    assert all(WRONG_KEY not in line for line in lines)


def test_a_certificate_not_verified_is_reported_as_tls_naming_requests_ca_bundle(
    openid_server, make_context, monkeypatch, caplog
):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # the server's CA is not trusted
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    url = openid_server.server.url + "/" + ACCOUNT
    connection = f"AccountName={ACCOUNT};AccountKey={KEY};TableEndpoint={url};QueueEndpoint={url};"
    ctx = make_context(AzureWebJobsStorage=connection)

    with caplog.at_level(logging.ERROR, logger="shared.storage"), pytest.raises(StorageTlsError) as raised:
        ctx.storage.table()

    assert "REQUESTS_CA_BUNDLE" in raised.value.message
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "TLS" in line and "REQUESTS_CA_BUNDLE" in line and "could not be reached" not in line


def test_storage_that_cannot_be_reached_is_still_try_again_later(make_context):
    connection = f"AccountName={ACCOUNT};AccountKey={KEY};TableEndpoint=http://127.0.0.1:9/{ACCOUNT};QueueEndpoint=http://127.0.0.1:9/{ACCOUNT};"
    ctx = make_context(AzureWebJobsStorage=connection)
    with pytest.raises(StorageUnavailable) as raised:
        ctx.storage.table()
    assert type(raised.value) is StorageUnavailable and "try again later" in raised.value.message


def test_urllib3_at_debug_never_prints_a_sas_signature(azurite, make_context, caplog):
    sas = generate_account_sas(
        AzureNamedKeyCredential(ACCOUNT, KEY),
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True, update=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    signature = dict(part.split("=", 1) for part in sas.split("&"))["sig"]
    table_url = f"http://127.0.0.1:{azurite.table_port}/{ACCOUNT}"
    connection = f"TableEndpoint={table_url};QueueEndpoint={table_url};SharedAccessSignature={sas}"
    ctx = make_context(AzureWebJobsStorage=connection)

    with caplog.at_level(logging.DEBUG):
        ctx.storage.table()
        assert ctx.calls.get("nobody") is None

    lines = [r.getMessage() for r in caplog.records]
    assert any(r.name.startswith("urllib3") and "sig=REDACTED" in r.getMessage() for r in caplog.records), lines
    for text in (signature, signature.replace("%2B", "+"), signature.replace("%2F", "/")):
        assert all(text not in line for line in lines)
