"""Settings: one reader, the contract's defaults, and every bad value named."""

from __future__ import annotations

import pytest

from shared.settings import load_settings

SECRET = "s3cr3t-VALUE-never-logged"
GRAPH_OK = {
    "GRAPH_CLIENT_ID": "app",
    "GRAPH_CLIENT_SECRET": SECRET,
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}


def test_defaults_follow_the_contract():
    settings = load_settings(GRAPH_OK)
    assert settings.calls_table_name == "activecalls"
    assert settings.cleanup_queue_name == "call-cleanup"
    assert settings.work_queue_name == "keepalive-work"
    assert settings.concurrency == 64
    assert settings.request_timeout == 10
    assert settings.at_risk_minutes == 30
    assert settings.fanout_threshold == 5000
    assert settings.cloud == "global"
    assert settings.graph_base_url == "https://graph.microsoft.com"
    assert settings.authority_host == "https://login.microsoftonline.com"
    assert settings.instance_discovery is True
    assert settings.token_exchange_audience == "api://AzureADTokenExchange"
    assert settings.dry_run is False
    assert settings.notification_openid_url == "https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration"
    assert settings.tick_problems == () and settings.storage_problems == ()


@pytest.mark.parametrize(
    ("cloud", "graph", "authority", "audience"),
    [
        ("usgov", "https://graph.microsoft.us", "https://login.microsoftonline.us", "api://AzureADTokenExchangeUSGov"),
        (
            "USGOVDOD",
            "https://dod-graph.microsoft.us",
            "https://login.microsoftonline.us",
            "api://AzureADTokenExchangeUSGov",
        ),
    ],
)
def test_national_clouds(cloud, graph, authority, audience):
    settings = load_settings({**GRAPH_OK, "GRAPH_CLOUD": cloud})
    assert (settings.graph_base_url, settings.authority_host, settings.token_exchange_audience) == (
        graph, authority, audience,
    )  # fmt: skip


def test_overrides_turn_instance_discovery_off_for_a_host_that_is_not_microsofts():
    settings = load_settings(
        {**GRAPH_OK, "GRAPH_BASE_URL": "https://127.0.0.1:8443/", "GRAPH_AUTHORITY_HOST": "https://127.0.0.1:8444"}
    )
    assert settings.graph_base_url == "https://127.0.0.1:8443"
    assert settings.authority_host == "https://127.0.0.1:8444"
    assert settings.instance_discovery is False


def test_empty_values_count_as_unset():
    settings = load_settings({**GRAPH_OK, "KEEPALIVE_CONCURRENCY": "", "GRAPH_TENANT_ID": "  ", "GRAPH_CERT": ""})
    assert settings.concurrency == 64 and settings.tenant_id is None and settings.tick_problems == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KEEPALIVE_CONCURRENCY", "0"),
        ("KEEPALIVE_CONCURRENCY", "257"),
        ("KEEPALIVE_CONCURRENCY", "many"),
        ("KEEPALIVE_REQUEST_TIMEOUT", "-1"),
        ("KEEPALIVE_REQUEST_TIMEOUT", "nan"),
        ("KEEPALIVE_AT_RISK_MINUTES", "0"),
        ("KEEPALIVE_AT_RISK_MINUTES", "45"),
        ("KEEPALIVE_FANOUT_THRESHOLD", "0"),
        ("KEEPALIVE_TENANT_RATE", "0"),
        ("KEEPALIVE_TENANT_RATE", "3001"),
        ("KEEPALIVE_TENANT_RATE", "fast"),
        ("GRAPH_TENANT_ID", "contoso.onmicrosoft.com"),
        ("GRAPH_CLOUD", "china"),
        ("GRAPH_BASE_URL", "graph.microsoft.com"),
        ("GRAPH_AUTHORITY_HOST", "ftp://login"),
        ("GRAPH_DRY_RUN", "maybe"),
        ("GRAPH_NOTIFICATION_OPENID_URL", "not a url"),
    ],
)
def test_an_invalid_graph_or_tuning_value_is_named_and_the_default_kept(name, value):
    settings = load_settings({**GRAPH_OK, name: value})
    assert len(settings.tick_problems) == 1
    assert settings.tick_problems[0].startswith(name)
    assert settings.storage_problems == ()


def test_tenant_rate_defaults_to_1000_and_its_bounds_are_inclusive():
    assert load_settings(GRAPH_OK).tenant_rate == 1000
    assert load_settings({**GRAPH_OK, "KEEPALIVE_TENANT_RATE": "1"}).tenant_rate == 1
    assert load_settings({**GRAPH_OK, "KEEPALIVE_TENANT_RATE": "3000"}).tenant_rate == 3000


def test_concurrency_bounds_are_inclusive():
    assert load_settings({**GRAPH_OK, "KEEPALIVE_CONCURRENCY": "1"}).concurrency == 1
    assert load_settings({**GRAPH_OK, "KEEPALIVE_CONCURRENCY": "256"}).concurrency == 256


def test_tenant_id_is_stored_lowercase():
    settings = load_settings({**GRAPH_OK, "GRAPH_TENANT_ID": "72F988BF-86F1-41AF-91AB-2D7CD011DB47"})
    assert settings.tenant_id == "72f988bf-86f1-41af-91ab-2d7cd011db47"


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"GRAPH_CLIENT_SECRET": SECRET, "GRAPH_CLIENT_CERTIFICATE_PATH": "/c.pem"},
        {
            "GRAPH_CLIENT_SECRET": SECRET,
            "GRAPH_MANAGED_IDENTITY_CLIENT_ID": "mi",
            "GRAPH_CLIENT_CERTIFICATE_PATH": "/c",
        },
    ],
)
def test_exactly_one_credential_and_the_problem_names_all_three(credentials):
    settings = load_settings(
        {"GRAPH_CLIENT_ID": "app", "AzureWebJobsStorage": "UseDevelopmentStorage=true", **credentials}
    )
    [problem] = settings.tick_problems
    for name in ("GRAPH_CLIENT_SECRET", "GRAPH_CLIENT_CERTIFICATE_PATH", "GRAPH_MANAGED_IDENTITY_CLIENT_ID"):
        assert name in problem
    assert SECRET not in problem


def test_missing_client_id_is_named():
    settings = load_settings({"GRAPH_CLIENT_SECRET": SECRET})
    assert any(p.startswith("GRAPH_CLIENT_ID") for p in settings.tick_problems)


def test_a_dry_run_needs_no_credential():
    assert load_settings({"GRAPH_DRY_RUN": "TRUE"}).tick_problems == ()


def test_the_secret_is_not_in_the_repr():
    assert SECRET not in repr(load_settings(GRAPH_OK))
    assert "AccountKey=" not in repr(load_settings({"AzureWebJobsStorage": "AccountName=a;AccountKey=k2V5;"}))


def test_connection_string_form():
    storage = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}).storage
    assert storage is not None and storage.connection_string == "UseDevelopmentStorage=true"


def test_identity_form():
    settings = load_settings(
        {
            "AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.windows.net/",
            "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
            "AzureWebJobsStorage__blobServiceUri": "https://acct.blob.core.windows.net",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "11111111-2222-3333-4444-555555555555",
        }
    )
    assert settings.storage_problems == ()
    storage = settings.storage
    assert storage is not None and storage.connection_string is None
    assert storage.table_service_uri == "https://acct.table.core.windows.net"
    assert storage.queue_service_uri == "https://acct.queue.core.windows.net"
    assert storage.credential == "managedidentity"
    assert storage.client_id == "11111111-2222-3333-4444-555555555555"


def test_account_name_form_derives_the_service_uris():
    storage = load_settings({"AzureWebJobsStorage__accountName": "acct"}).storage
    assert storage is not None
    assert storage.table_service_uri == "https://acct.table.core.windows.net"
    assert storage.queue_service_uri == "https://acct.queue.core.windows.net"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({}, "AzureWebJobsStorage"),
        ({"AzureWebJobsStorage__tableServiceUri": "https://a.table.core.windows.net"}, "queueServiceUri"),
        (
            {
                "AzureWebJobsStorage__tableServiceUri": "http://a.table.core.windows.net",
                "AzureWebJobsStorage__queueServiceUri": "https://a.queue.core.windows.net",
            },
            "tableServiceUri",
        ),
        (
            {
                "AzureWebJobsStorage__tableServiceUri": "https://a.table.core.windows.net",
                "AzureWebJobsStorage__queueServiceUri": "https://a.queue.core.windows.net",
                "AzureWebJobsStorage__credential": "password",
            },
            "AzureWebJobsStorage__credential",
        ),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "CALLS_TABLE_NAME": "1bad"}, "CALLS_TABLE_NAME"),
        (
            {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "CLEANUP_QUEUE_NAME": "Bad_Queue"},
            "CLEANUP_QUEUE_NAME",
        ),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "KEEPALIVE_WORK_QUEUE_NAME": "a--b"}, "KEEPALIVE_WORK"),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=ture"}, "for Azurite write UseDevelopmentStorage=true"),
    ],
)
def test_storage_problems_are_named_apart_from_graph_problems(environ, named):
    settings = load_settings(environ)
    assert any(named in problem for problem in settings.storage_problems)


CONTRACT_SETTINGS = [
    "AzureWebJobsStorage", "CALLS_TABLE_NAME", "CLEANUP_QUEUE_NAME", "KEEPALIVE_SCHEDULE", "KEEPALIVE_CONCURRENCY",
    "KEEPALIVE_REQUEST_TIMEOUT", "KEEPALIVE_AT_RISK_MINUTES", "GRAPH_TENANT_ID", "GRAPH_CLIENT_ID",
    "GRAPH_CLIENT_SECRET", "GRAPH_CLIENT_CERTIFICATE_PATH", "GRAPH_MANAGED_IDENTITY_CLIENT_ID",
    "KEEPALIVE_FANOUT_THRESHOLD", "KEEPALIVE_WORK_QUEUE_NAME", "GRAPH_CLOUD", "GRAPH_BASE_URL", "GRAPH_AUTHORITY_HOST",
    "GRAPH_DRY_RUN", "GRAPH_NOTIFICATION_OPENID_URL", "KEEPALIVE_TENANT_RATE", "CALL_EVENTS_TOPIC_ENDPOINT",
    "CALL_EVENTS_TOPIC_KEY", "CALL_EVENTS_QUEUE_NAME",
]  # fmt: skip


def test_loading_never_raises_on_garbage_and_names_each_bad_setting():
    settings = load_settings({name: "\x00garbage" for name in CONTRACT_SETTINGS})
    problems = " ".join(settings.tick_problems + settings.storage_problems + settings.events_problems)
    for name in ["CALLS_TABLE_NAME", "CLEANUP_QUEUE_NAME", "KEEPALIVE_CONCURRENCY", "KEEPALIVE_REQUEST_TIMEOUT",
                 "KEEPALIVE_AT_RISK_MINUTES", "GRAPH_TENANT_ID", "KEEPALIVE_FANOUT_THRESHOLD",
                 "KEEPALIVE_WORK_QUEUE_NAME", "GRAPH_CLOUD", "GRAPH_BASE_URL", "GRAPH_AUTHORITY_HOST",
                 "GRAPH_DRY_RUN", "GRAPH_NOTIFICATION_OPENID_URL", "GRAPH_CLIENT_SECRET",
                 "KEEPALIVE_TENANT_RATE", "CALL_EVENTS_TOPIC_ENDPOINT", "CALL_EVENTS_QUEUE_NAME"]:  # fmt: skip
        assert name in problems


def test_the_local_sample_sets_every_contract_setting_and_loads_cleanly():
    import json
    from pathlib import Path

    values = json.loads((Path(__file__).resolve().parents[2] / "local.settings.sample.json").read_text())["Values"]
    assert set(CONTRACT_SETTINGS) <= set(values)
    assert values["KEEPALIVE_SCHEDULE"] == "0 */10 * * * *"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert values["CALL_EVENTS_QUEUE_NAME"] == "call-events"  # bound as %CALL_EVENTS_QUEUE_NAME%: always set
    assert values["CALL_EVENTS_TOPIC_ENDPOINT"] == values["CALL_EVENTS_TOPIC_KEY"] == ""  # no topic: nothing published
    settings = load_settings(values)
    assert settings.storage_problems == () and settings.tick_problems == () and settings.events_problems == ()
    assert settings.events_enabled is False


# --- CALL_EVENTS_* ---------------------------------------------------------------------------------------
TOPIC = "https://topic.westus2-1.eventgrid.azure.net/api/events"
TOPIC_KEY = "k3y-VALUE-never-logged=="
STORAGE_IDENTITY = "11111111-2222-3333-4444-555555555555"


def test_call_events_defaults_no_topic_and_the_call_events_queue():
    settings = load_settings(GRAPH_OK)
    assert settings.events_enabled is False and settings.events_topic_endpoint is None
    assert settings.events_queue_name == "call-events"
    assert settings.events_problems == () and settings.ending_problems == ()


def test_a_topic_with_a_key_or_with_the_storage_identity_is_valid():
    keyed = load_settings({**GRAPH_OK, "CALL_EVENTS_TOPIC_ENDPOINT": TOPIC, "CALL_EVENTS_TOPIC_KEY": TOPIC_KEY})
    assert (keyed.events_enabled, keyed.events_topic_endpoint, keyed.events_topic_key) == (True, TOPIC, TOPIC_KEY)
    assert keyed.events_problems == ()
    entra = load_settings(
        {**GRAPH_OK, "CALL_EVENTS_TOPIC_ENDPOINT": TOPIC, "AzureWebJobsStorage__clientId": STORAGE_IDENTITY}
    )
    assert entra.events_problems == () and entra.events_topic_key is None
    assert entra.events_identity_client_id == STORAGE_IDENTITY
    assert TOPIC_KEY not in repr(keyed)  # a secret, never shown


def test_a_topic_with_neither_key_nor_identity_is_named_and_never_stops_a_tick():
    """The events still go onto the queue (nothing is lost); the queue function poisons them naming the setting."""
    settings = load_settings({**GRAPH_OK, "CALL_EVENTS_TOPIC_ENDPOINT": TOPIC})
    [problem] = settings.events_topic_problems
    assert "CALL_EVENTS_TOPIC_KEY" in problem and "AzureWebJobsStorage__clientId" in problem
    assert settings.events_enabled and settings.problems(dry_run=False) == () and settings.storage_problems == ()


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://topic.westus2-1.eventgrid.azure.net/api/events",
        "topic.westus2-1.eventgrid.azure.net/api/events",
        f"https://topic.westus2-1.eventgrid.azure.net/api/events?aeg-sas-key={TOPIC_KEY}",
        "https:///api/events",
    ],
)
def test_an_endpoint_that_is_not_https_or_carries_a_query_is_named_never_quoted(endpoint):
    settings = load_settings({**GRAPH_OK, "CALL_EVENTS_TOPIC_ENDPOINT": endpoint, "CALL_EVENTS_TOPIC_KEY": TOPIC_KEY})
    [problem] = settings.events_topic_problems
    assert problem.startswith("CALL_EVENTS_TOPIC_ENDPOINT") and endpoint not in problem and TOPIC_KEY not in problem
    assert settings.events_enabled is True and settings.events_topic_endpoint is None  # events are still queued
    assert settings.problems(dry_run=False) == ()  # the tick runs


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("Call_Events", "3-56 lowercase"),
        ("a" * 57, "3-56 lowercase"),  # a-57 + "-poison" would be 64: the host could not poison
        ("call-cleanup", "CLEANUP_QUEUE_NAME"),
        ("keepalive-work", "KEEPALIVE_WORK_QUEUE_NAME"),
    ],
)
def test_a_bad_events_queue_stops_ending_calls_only_with_a_topic(value, named):
    """With a topic set, ending a call could not write its event: the tick does not run (named). Without one,
    nothing is written there: the tick runs, and the problem is still named. The HTTP API never reads it."""
    without = load_settings({**GRAPH_OK, "CALL_EVENTS_QUEUE_NAME": value})
    [problem] = without.events_queue_problems
    assert problem.startswith("CALL_EVENTS_QUEUE_NAME") and named in problem
    assert without.problems(dry_run=False) == () and without.storage_problems == ()
    with_topic = load_settings(
        {**GRAPH_OK, "CALL_EVENTS_QUEUE_NAME": value, "CALL_EVENTS_TOPIC_ENDPOINT": TOPIC, "CALL_EVENTS_TOPIC_KEY": "k"}
    )
    assert with_topic.problems(dry_run=False) == (problem,) and with_topic.tick_problems == (problem,)
    assert with_topic.problems(dry_run=True) == ()  # a dry run ends nothing
    assert with_topic.storage_problems == ()


def test_the_events_queue_may_be_56_characters():
    settings = load_settings({**GRAPH_OK, "CALL_EVENTS_QUEUE_NAME": "e" * 56})
    assert settings.events_problems == () and settings.events_queue_name == "e" * 56


def test_the_ca_bundle_in_force_is_the_one_requests_uses_and_the_hint_names_it_and_its_origin(tmp_path):
    assert load_settings({}).ca_bundle is None
    assert "REQUESTS_CA_BUNDLE is not set" in load_settings({}).tls_hint()
    bundle = tmp_path / "ca.pem"
    bundle.write_text("", encoding="utf-8")
    both = load_settings({"REQUESTS_CA_BUNDLE": str(bundle), "CURL_CA_BUNDLE": "/elsewhere.pem"})
    assert both.ca_bundle == ("REQUESTS_CA_BUNDLE", str(bundle))  # requests reads REQUESTS_CA_BUNDLE first
    assert both.tls_hint().startswith(f"REQUESTS_CA_BUNDLE={bundle} is in force (from the app settings)")
    assert both.ca_bundle_problem() is None
    curl = load_settings({"REQUESTS_CA_BUNDLE": " ", "CURL_CA_BUNDLE": "/elsewhere.pem"})  # empty counts as unset
    assert curl.ca_bundle == ("CURL_CA_BUNDLE", "/elsewhere.pem")
    assert (
        curl.ca_bundle_problem() == "CURL_CA_BUNDLE names /elsewhere.pem, which does not exist (from the app settings)"
    )


SIG = "CANARY0sig0Zq7%2Bx%3D"
SAS_URI = f"http://acct.table.core.windows.net/?sv=2024-08-04&ss=t&sig={SIG}"


@pytest.mark.parametrize(
    "environ",
    [
        {"AzureWebJobsStorage__tableServiceUri": SAS_URI, "AzureWebJobsStorage__queueServiceUri": "https://q.example"},
        {"AzureWebJobsStorage__tableServiceUri": "https://t.example", "AzureWebJobsStorage__queueServiceUri": SAS_URI},
        {"AzureWebJobsStorage__tableServiceUri": f"sv=1&sig={SIG}", "AzureWebJobsStorage__queueServiceUri": "https://q"},
        {"AzureWebJobsStorage__tableServiceUri": f"https://[{SIG}]/", "AzureWebJobsStorage__queueServiceUri": "https://q"},
        {"AzureWebJobsStorage__tableServiceUri": f"https:///?sig={SIG}", "AzureWebJobsStorage__queueServiceUri": "https://q"},
        {"AzureWebJobsStorage__tableServiceUri": "https://t", "AzureWebJobsStorage__queueServiceUri": "https://q",
         "AzureWebJobsStorage__credential": SIG},
    ],
    ids=["http table uri with a sas", "http queue uri with a sas", "a bare sas", "not a url", "no host", "credential"],
)  # fmt: skip
def test_an_identity_based_storage_problem_names_the_setting_and_never_quotes_its_value(environ):
    settings = load_settings(environ)
    [problem] = settings.storage_problems
    assert problem.startswith("AzureWebJobsStorage__") and "must be" in problem
    assert SIG not in problem and "sig=" not in problem, problem


@pytest.mark.parametrize("name", ["GRAPH_BASE_URL", "GRAPH_AUTHORITY_HOST", "GRAPH_NOTIFICATION_OPENID_URL"])
@pytest.mark.parametrize("value", [f"graph.example/?sig={SIG}", f"ftp://user:{SIG}@host", f"https://[{SIG}"])
def test_a_url_setting_with_a_query_or_user_info_is_named_not_quoted_and_never_raises(name, value):
    settings = load_settings({**GRAPH_OK, name: value})
    [problem] = settings.tick_problems
    assert problem.startswith(name) and SIG not in problem
