"""The command line's words for each error (shared/cli/advice.py) and its local.settings.json reading."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

from shared.cli.advice import Where, advise
from shared.cli.local_settings import load, read_local_settings, shadowed
from shared.errors import Conflict, RangeIncomplete, SettingsError, StorageUnavailable, TokenError, UsageError
from shared.settings import load_settings

LOCAL = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
REMOTE = load_settings({"AzureWebJobsStorage__tableServiceUri": "https://a.table.core.windows.net",
                        "AzureWebJobsStorage__queueServiceUri": "https://a.queue.core.windows.net"})  # fmt: skip


def _where(settings=LOCAL, found: bool = True) -> Where:
    return Where("callkeeper", Path("/app"), found, settings)


def _raised_from(error: BaseException, cause: BaseException) -> BaseException:
    try:
        raise error from cause
    except BaseException as raised:
        return raised


def test_storage_down_locally_says_how_to_start_azurite_and_remotely_which_setting():
    down = _raised_from(StorageUnavailable("Storage is unavailable; try again later."), ServiceRequestError("refused"))
    local = advise(down, _where())
    assert (local.code, local.exit_code) == ("storageUnavailable", 1)
    assert "bash scripts/azurite.sh start .azurite" in local.hint
    remote = advise(down, _where(REMOTE))
    assert "AzureWebJobsStorage" in remote.message and "tableServiceUri" in remote.hint


def test_a_storage_403_names_the_missing_roles_wrapped_or_not():
    refused = HttpResponseError(
        message="This request is not authorized to perform this operation using this permission."
    )
    refused.status_code = 403
    for error in (_raised_from(StorageUnavailable("Storage is unavailable"), refused), refused):
        advice = advise(error, _where(REMOTE))
        assert advice.code == "storageForbidden" and advice.exit_code == 1
        assert "Storage Table Data Contributor" in advice.hint and "Storage Queue Data Contributor" in advice.hint


def test_tls_anywhere_in_the_causes_points_at_the_ca_bundle():
    error = _raised_from(StorageUnavailable("x"), ssl.SSLCertVerificationError("certificate verify failed"))
    advice = advise(error, _where())
    assert advice.code == "tlsError" and "REQUESTS_CA_BUNDLE" in advice.hint


def test_credentials_tokens_conflicts_usage_interrupts_and_the_unexpected():
    refused = advise(_raised_from(StorageUnavailable("x"), ClientAuthenticationError("no")), _where(REMOTE))
    assert refused.code == "storageUnavailable" and "az login" in refused.hint
    token = advise(TokenError("invalid_client", tenant_id="t"), _where())
    assert token.code == "tokenError" and "GRAPH_CLIENT_ID" in token.hint
    conflict = advise(Conflict("registered under another tenant"), _where())
    assert conflict.exit_code == 1 and "callkeeper calls remove ID" in conflict.hint
    usage = advise(UsageError("bad", usage="usage: callkeeper calls", prog="callkeeper calls"), _where())
    assert (usage.code, usage.exit_code) == ("invalidRequest", 2) and "callkeeper calls --help" in usage.hint
    assert advise(KeyboardInterrupt(), _where()).exit_code == 130
    other = advise(RangeIncomplete("boom"), _where())
    assert other.code == "internalError" and other.exit_code == 1
    bug = advise(ZeroDivisionError("division by zero"), _where())
    assert bug.code == "internalError" and "-v" in bug.hint and "ZeroDivisionError" in bug.message


def test_settings_errors_say_where_to_fix_them():
    missing_file = advise(SettingsError(["AzureWebJobsStorage is not set"]), _where(found=False))
    assert missing_file.exit_code == 2 and "no local.settings.json in /app" in missing_file.hint
    credential = advise(SettingsError(["exactly one of GRAPH_CLIENT_SECRET, ... must be set"]), _where())
    assert "/app/local.settings.json" in credential.hint and "tick --dry-run" in credential.hint


def test_local_settings_values_merge_under_the_environment_and_shadowing_is_named(tmp_path):
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"Values": {"A": "file", "B": "file", "C": "", "D": 64, "E": True}}), encoding="utf-8"
    )
    assert read_local_settings(tmp_path / "local.settings.json") == {"A": "file", "B": "file", "C": "", "D": "64",
                                                                      "E": "true"}  # fmt: skip
    environ = {"A": "shell", "B": "file", "C": "shell", "D": " "}
    assert shadowed(environ, read_local_settings(tmp_path / "local.settings.json")) == ["A"]
    loaded = load(tmp_path, environ)
    assert loaded.file_found and loaded.shadowed == ["A"]
    assert environ["D"] == "64" and environ["E"] == "true" and environ["A"] == "shell"  # completed, never overwritten
    assert read_local_settings(tmp_path / "missing.json") == {}


@pytest.mark.parametrize("text", ["{not json", "[]", '{"Values": {"A": {"nested": 1}}}'])
def test_an_unreadable_local_settings_file_is_a_settings_error(tmp_path, text):
    (tmp_path / "local.settings.json").write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError):
        read_local_settings(tmp_path / "local.settings.json")


@pytest.mark.parametrize(
    "error",
    [
        ssl.SSLError("certificate verify failed for /activecalls()?sv=2024-08-04&sig=CANARYsig%2B%3D&se=1"),
        RuntimeError("GET https://a.table.core.windows.net/activecalls()?sig=CANARYsig%2B%3D failed"),
        StorageUnavailable("Storage is unavailable; try again later. url=/t?sv=1&SIG=CANARYsig%2B%3D"),
    ],
    ids=["tls", "unexpected", "storage"],
)
def test_no_message_quotes_a_sas_signature_from_an_errors_text(error):
    advice = advise(error, _where(REMOTE))
    assert "CANARYsig" not in advice.message and "CANARYsig" not in advice.hint
    assert "REDACTED" in advice.message
