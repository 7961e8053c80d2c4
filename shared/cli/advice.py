"""What the command line says about an error: a code, a message, what to do next, and the exit code.

Every error goes through `advise`, which walks `ADVICE` in order and takes the first row whose type matches
the error (or, for rows marked `cause`, an exception it was raised from). A new typed error slots in as one
row here. `--json` prints `{"error": {"code", "message"}}`; stderr gets the message and the hint.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from requests.exceptions import SSLError

from shared.connection_string import parse
from shared.errors import (
    ApiError,
    CallkeeperError,
    CallNotFound,
    Conflict,
    InvalidCallId,
    InvalidMetadata,
    InvalidRequest,
    InvalidTenantId,
    SettingsError,
    SettingsFileError,
    StorageAccessDenied,
    StorageError,
    StorageMisconfigured,
    StorageTlsError,
    TokenError,
    UsageError,
)
from shared.settings import CREDENTIAL_SETTINGS, Settings
from shared.storage import redact_sas_text

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: stdout's reader went away (`| head`), as git and cat end there

AZURITE_START = "bash scripts/azurite.sh start .azurite"
DEFAULT_AZURITE_PORTS = ("10000", "10001", "10002")  # blob, queue, table: what UseDevelopmentStorage=true reaches
AZURITE_PORTS_FILE = ".azurite/azurite.ports"  # the ports of the Azurite scripts/azurite.sh started here
STORAGE_ROLES = "Storage Table Data Contributor and Storage Queue Data Contributor"


@dataclass(frozen=True)
class Where:
    """What a hint may mention: how the command was run, from which folder, with which settings."""

    prog: str
    folder: Path
    settings_file_found: bool
    settings: Settings | None = None


@dataclass(frozen=True)
class Advice:
    code: str  # camelCase, the API's code when the API has one
    message: str
    hint: str  # what to do next
    exit_code: int


Rule = Callable[[BaseException, Where], Advice]


def _is_local_storage(settings: Settings | None) -> bool:
    storage = settings.storage if settings else None
    if storage is None or storage.connection_string is None:
        return False
    text = storage.connection_string.replace(" ", "").lower()
    return "usedevelopmentstorage=true" in text or "127.0.0.1" in text or "localhost" in text


def _azurite_ports(settings: Settings | None) -> tuple[str, str, str]:
    """The blob, queue and table ports AzureWebJobsStorage names on this machine (the defaults for
    UseDevelopmentStorage=true); `?` for one it does not name. Only ports are read: the string holds a key."""
    storage = settings.storage if settings else None
    pairs = parse(storage.connection_string) if storage and storage.connection_string else None
    if not pairs or pairs.get("usedevelopmentstorage", "").casefold() == "true":
        return DEFAULT_AZURITE_PORTS
    ports = []
    for name in ("blobendpoint", "queueendpoint", "tableendpoint"):
        try:
            port = urlsplit(pairs.get(name, "")).port
        except ValueError:
            port = None
        ports.append(str(port) if port else "?")
    return ports[0], ports[1], ports[2]


def _start_azurite(settings: Settings | None, folder: Path) -> str:
    ports = _azurite_ports(settings)
    try:  # what `bash scripts/azurite.sh start` recorded for the Azurite it runs from this folder
        running = tuple((folder / AZURITE_PORTS_FILE).read_text(encoding="utf-8").split())
    except (OSError, UnicodeDecodeError):
        running = ()
    if running and running != ports:
        return (
            f"this folder's Azurite listens on ports {' '.join(running)} (blob, queue, table), which "
            "AzureWebJobsStorage does not name: set it to the string `bash scripts/azurite.sh connection .azurite` "
            "prints (README, 'Azurite on other ports')"
        )
    if ports == DEFAULT_AZURITE_PORTS:
        return (
            f"start Azurite from the app folder: `{AZURITE_START}` (or `make prepare`); it listens on 127.0.0.1 "
            "ports 10000-10002"
        )
    chosen = " ".join(ports)
    return (
        f"start Azurite from the app folder on the ports AzureWebJobsStorage names (blob, queue, table): "
        f'`AZURITE_PORTS="{chosen}" {AZURITE_START}` (or `AZURITE_PORTS="{chosen}" make prepare`)'
    )


def _tls_hint(settings: Settings | None) -> str:
    in_force = f"{settings.tls_hint()}; " if settings is not None else ""
    return (
        f"the server's TLS certificate is not trusted: {in_force}set REQUESTS_CA_BUNDLE (environment or "
        "local.settings.json) to the PEM of the CA that signed it (the walkthrough's stand-ins: "
        ".standins/standin-ca.pem); behind a TLS-inspecting proxy, to your organisation's CA bundle"
    )


def _settings(error: BaseException, where: Where) -> Advice:
    assert isinstance(error, SettingsError)
    places = f"Values of {where.folder / 'local.settings.json'}, or the environment variable of that name"
    if not where.settings_file_found:
        places = (
            f"there is no local.settings.json in {where.folder}: run the command from the app folder, or create it "
            "with `make prepare` (a copy of local.settings.sample.json); or set the environment variable"
        )
    hint = f"fix the setting named above ({places})"
    if any(name in problem for problem in error.problems for name in CREDENTIAL_SETTINGS):
        hint += f"; `{where.prog} tick --dry-run` needs no Graph credential"
    return Advice("invalidSettings", "invalid settings: " + "; ".join(error.problems), hint, EXIT_USAGE)


def _settings_file(error: BaseException, where: Where) -> Advice:
    assert isinstance(error, SettingsFileError)
    hint = (
        f'fix {error.path}: it must be a JSON object whose "Values" is an object of setting names and string '
        "values, like local.settings.sample.json (or move it aside and run `make prepare` to copy the sample again)"
    )
    return Advice("invalidSettings", "invalid settings: " + "; ".join(error.problems), hint, EXIT_USAGE)


def _storage(error: BaseException, where: Where) -> Advice:
    refused = next((item for item in _chain(error) if isinstance(item, HttpResponseError)), None)
    if refused is not None and refused.status_code == 403:
        return _storage_forbidden(refused, where)
    message = str(getattr(error, "message", error))
    if _is_local_storage(where.settings):
        message = "storage is not answering (AzureWebJobsStorage points at Azurite on this machine)"
        hint = _start_azurite(where.settings, where.folder)
    else:
        hint = (
            "check that AzureWebJobsStorage (or AzureWebJobsStorage__tableServiceUri and __queueServiceUri) names "
            "a storage account this machine can reach, then try again"
        )
        message = f"{message} (AzureWebJobsStorage)"
    return Advice("storageUnavailable", message, hint, EXIT_FAILED)


def _storage_credential(error: BaseException, where: Where) -> Advice:
    return Advice(
        "storageUnavailable",
        "storage refused the credential (AzureWebJobsStorage)",
        "check the account key in AzureWebJobsStorage; with identity-based storage, sign in (`az login`) or set "
        "AzureWebJobsStorage__clientId to the managed identity's client id",
        EXIT_FAILED,
    )


def _storage_misconfigured(error: BaseException, where: Where) -> Advice:
    assert isinstance(error, StorageMisconfigured)
    return Advice(
        "storageUnavailable",
        f"{error.message} (AzureWebJobsStorage)",
        "fix AzureWebJobsStorage: `UseDevelopmentStorage=true` for Azurite, a full connection string, or the "
        "identity-based AzureWebJobsStorage__tableServiceUri and __queueServiceUri settings",
        EXIT_USAGE,
    )


def _storage_denied(error: BaseException, where: Where) -> Advice:
    assert isinstance(error, StorageAccessDenied)
    return Advice(
        "storageForbidden",
        error.message,
        f"give the identity in use the role {error.role} on the storage account (docs/deploy.md), or fix the "
        "account key in AzureWebJobsStorage; a role assignment can take a few minutes to apply",
        EXIT_FAILED,
    )


def _storage_forbidden(error: BaseException, where: Where) -> Advice:
    assert isinstance(error, HttpResponseError)
    if error.status_code != 403:
        return _unexpected(error, where)
    code = getattr(error, "error_code", None) or "Forbidden"
    return Advice(
        "storageForbidden",
        f"storage refused the request (403 {code})",
        f"the identity in use needs the roles {STORAGE_ROLES} on the storage account "
        "(docs/deploy.md); a role assignment can take a few minutes to apply",
        EXIT_FAILED,
    )


def _tls(error: BaseException, where: Where) -> Advice:
    return Advice("tlsError", f"TLS failed: {error}", _tls_hint(where.settings), EXIT_FAILED)


def _token(error: BaseException, where: Where) -> Advice:
    return Advice(
        "tokenError",
        str(error),
        "check GRAPH_CLIENT_ID, the credential (GRAPH_CLIENT_SECRET, GRAPH_CLIENT_CERTIFICATE_PATH or "
        "GRAPH_MANAGED_IDENTITY_CLIENT_ID) and the tenant; Entra's error code above says which",
        EXIT_FAILED,
    )


_API_HINTS: dict[type[ApiError], str] = {
    CallNotFound: "`{prog} calls list` shows the registered calls",
    Conflict: "`{prog} calls show ID` shows its tenant; `{prog} calls remove ID` first to register it under another",
    InvalidCallId: "a callId is 1-256 characters without / \\ # ?, whitespace or control characters",
    InvalidTenantId: "--tenant takes the tenant's GUID (Entra ID > Overview > Tenant ID)",
    InvalidMetadata: "--metadata takes KEY=VALUE, each key once, 4,096 bytes in all",
    InvalidRequest: "see `{prog} --help`",
}


def _api(error: BaseException, where: Where) -> Advice:
    assert isinstance(error, ApiError)
    usage = isinstance(error, InvalidRequest | InvalidCallId | InvalidTenantId | InvalidMetadata)
    hint = next((text for kind, text in _API_HINTS.items() if isinstance(error, kind)), "")
    return Advice(error.code, error.message, hint.format(prog=where.prog), EXIT_USAGE if usage else EXIT_FAILED)


def _usage(error: BaseException, where: Where) -> Advice:
    assert isinstance(error, UsageError)
    return Advice("invalidRequest", str(error), f"see `{error.prog} --help`", EXIT_USAGE)


def _interrupted(error: BaseException, where: Where) -> Advice:
    return Advice("interrupted", "interrupted", "nothing was left half done; run the command again", EXIT_INTERRUPTED)


def _other_app_error(error: BaseException, where: Where) -> Advice:
    return Advice(
        "internalError", f"{type(error).__name__}: {error}", f"run `{where.prog} -v ...` for details", EXIT_FAILED
    )


def _unexpected(error: BaseException, where: Where) -> Advice:
    return Advice(
        "internalError",
        f"unexpected {type(error).__name__}: {error}",
        f"run the command again with -v to see the traceback (`{where.prog} -v ...`), and report it if it repeats",
        EXIT_FAILED,
    )


# (error type, look in the causes too, rule): the first match wins.
ADVICE: list[tuple[type[BaseException], bool, Rule]] = [
    (UsageError, False, _usage),
    (SettingsFileError, False, _settings_file),
    (SettingsError, False, _settings),
    (StorageMisconfigured, False, _storage_misconfigured),
    (StorageAccessDenied, False, _storage_denied),
    (StorageTlsError, False, _tls),
    (ssl.SSLError, True, _tls),
    (SSLError, True, _tls),
    (ClientAuthenticationError, True, _storage_credential),
    (StorageError, False, _storage),
    (ApiError, False, _api),
    (TokenError, False, _token),
    (CallkeeperError, False, _other_app_error),
    (HttpResponseError, False, _storage_forbidden),  # not wrapped in a StorageError
    (KeyboardInterrupt, False, _interrupted),
    (BaseException, False, _unexpected),
]


def _chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def advise(error: BaseException, where: Where) -> Advice:
    """The advice for `error`: the first row of `ADVICE` it (or, where allowed, a cause of it) matches.

    An error's own text can hold a request URL, and with a SAS connection string that URL carries the
    signature: every message is said with `sig=` redacted.
    """
    chain = _chain(error)
    matches = (
        rule for kind, causes, rule in ADVICE if any(isinstance(e, kind) for e in (chain if causes else chain[:1]))
    )
    advice = next(matches, _unexpected)(error, where)  # BaseException, the last row, matches everything
    return replace(advice, message=redact_sas_text(advice.message))
