"""AzureWebJobsStorage's connection-string form (shared/connection_string.py): parsed as azure-data-tables parses
it (`azure.core.utils.parse_connection_string`), and refused, named but never quoted, where it cannot work."""

from __future__ import annotations

import pytest

from shared.connection_string import connection_string_problem


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("garbage", "not a connection string"),
        ("AccountName=a;AccountKey=???", "not base64"),
        ("TableEndpoint=ftp://x;QueueEndpoint=https://x;SharedAccessSignature=s", "TableEndpoint"),
        ("AccountName=a", "neither an AccountKey"),
        ("AccountName=a;AccountName=b;AccountKey=a2V5", "not a connection string"),  # a name twice
        ("AccountName=;AccountKey=a2V5", "not a connection string"),  # a value empty
        ("AccountName=a;;AccountKey=a2V5", "not a connection string"),  # a part empty
        ("a=b=;c", "not a connection string"),  # a part without `=`
        ("UseDevelopmentStorage=ture", "UseDevelopmentStorage to something other than true"),
    ],
)
def test_a_malformed_connection_string_names_the_setting_and_never_quotes_it(value, problem):
    found = connection_string_problem(value)
    assert found is not None and problem in found and "AzureWebJobsStorage" in found and value not in found


@pytest.mark.parametrize(
    "value",
    [
        "UseDevelopmentStorage=true",
        "usedevelopmentstorage=TRUE;",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;",
        "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        "TableEndpoint=https://a.table.core.windows.net;QueueEndpoint=https://a.queue.core.windows.net;"
        "SharedAccessSignature=sv=2024&sig=abc",
    ],
)
def test_real_connection_strings_are_accepted(value):
    assert connection_string_problem(value) is None
