"""Storage clients from both forms of AzureWebJobsStorage, and storage faults answered as 503."""

from __future__ import annotations

import time

import pytest
from azure.identity import ManagedIdentityCredential
from azure.storage.queue import TextBase64EncodePolicy

from shared.settings import load_settings
from shared.storage import Storage
from tests.helpers import closed_port
from tests.host import body_of
from tests.integration.test_http_api import assert_error

pytestmark = pytest.mark.integration

IDENTITY = {
    "AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.windows.net",
    "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
    "AzureWebJobsStorage__blobServiceUri": "https://acct.blob.core.windows.net",
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": "11111111-2222-3333-4444-555555555555",
}


def test_identity_form_aims_clients_at_the_service_uris_with_a_managed_identity():
    storage = Storage(load_settings({**IDENTITY, "CALLS_TABLE_NAME": "calls", "CLEANUP_QUEUE_NAME": "ended"}))
    table = storage.table_client()
    queue = storage.queue_client("ended")

    assert table.url == "https://acct.table.core.windows.net" and table.table_name == "calls"
    assert queue.url == "https://acct.queue.core.windows.net/ended"
    assert isinstance(table.credential, ManagedIdentityCredential)
    assert queue.credential is table.credential  # one credential per process
    assert isinstance(queue._message_encode_policy, TextBase64EncodePolicy)


def test_connection_string_form_aims_clients_at_azurite(azurite, make_settings):
    settings = make_settings()
    storage = Storage(settings)
    table = storage.table_client()
    queue = storage.queue_client(settings.cleanup_queue_name)

    assert table.url.startswith(f"http://127.0.0.1:{azurite.table_port}/devstoreaccount1")
    assert queue.url == f"http://127.0.0.1:{azurite.queue_port}/devstoreaccount1/{settings.cleanup_queue_name}"
    assert isinstance(queue._message_encode_policy, TextBase64EncodePolicy)


def test_table_and_queue_are_created_when_missing(make_settings):
    settings = make_settings()
    storage = Storage(settings)
    storage.table()
    storage.queue(settings.cleanup_queue_name)

    assert Storage(settings).table_client().query_entities("PartitionKey eq @pk", parameters={"pk": "x"}).next
    assert Storage(settings).queue_client(settings.cleanup_queue_name).get_queue_properties().name


REQUESTS = [
    ("POST", "/api/calls", {"callId": "c"}),
    ("GET", "/api/calls", None),
    ("GET", "/api/calls/c", None),
    ("DELETE", "/api/calls/c", None),
]


@pytest.mark.parametrize(("method", "url", "body"), REQUESTS)
def test_unreachable_storage_answers_503_with_retry_after_quickly(make_context, host, method, url, body):
    port = closed_port()
    connection = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    make_context(install=True, AzureWebJobsStorage=connection, GRAPH_DRY_RUN=None)
    started = time.monotonic()
    response = host.request(method, url, body=body)
    elapsed = time.monotonic() - started
    assert_error(response, 503, "storageUnavailable")
    assert int(response.headers["Retry-After"]) > 0
    assert elapsed < 10


@pytest.mark.parametrize(("method", "url", "body"), REQUESTS)
def test_missing_storage_setting_answers_503(make_context, host, method, url, body):
    make_context(install=True, AzureWebJobsStorage=None, GRAPH_DRY_RUN=None)
    response = host.request(method, url, body=body)
    assert_error(response, 503, "storageUnavailable")
    assert "AzureWebJobsStorage" in body_of(response)["error"]["message"]


def test_bad_input_is_refused_before_storage_is_touched(make_context, host):
    """Validation does not need storage: a bad request is a 400 even while storage is down."""
    make_context(install=True, AzureWebJobsStorage=None, GRAPH_DRY_RUN=None)
    assert_error(host.request("POST", "/api/calls", body={"callId": ""}), 400, "invalidCallId")
