"""The command line's settings: a non-empty environment variable, else `Values` of `local.settings.json`.

Only the command line reads `local.settings.json` (the Functions host does it for the app); what it hands
to `shared.settings.load_settings` is one merged mapping. A setting that decides where a credential or a
token is sent is taken from the file only when that credential comes from the file too (`routing_problems`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from shared.errors import SettingsError, SettingsFileError
from shared.settings import CREDENTIAL_SETTINGS, Settings, load_settings

LOCAL_SETTINGS_FILE = "local.settings.json"


def read_local_settings(path: Path) -> dict[str, str]:
    """The `Values` of a `local.settings.json`; {} when there is no such file.

    Numbers and booleans are taken as the text the host would see (`true`, `64`); an unreadable file,
    or `Values` that is not an object of strings, numbers and booleans, raises `SettingsError`.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsFileError(f"{path} cannot be read ({type(error).__name__})", path=str(path)) from None
    try:
        document = json.loads(text)
    except ValueError as error:
        raise SettingsFileError(f"{path} is not valid JSON ({error})", path=str(path)) from None
    values = document.get("Values", {}) if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise SettingsFileError(f'{path} must hold an object with a "Values" object', path=str(path))
    result: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, bool):
            result[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            result[name] = str(value)
        elif value is not None:
            raise SettingsError([f"{name} in {path} must be a string (got {type(value).__name__})"])
    return result


def merge_settings(environ: Mapping[str, str], values: Mapping[str, str]) -> dict[str, str]:
    """A non-empty environment variable wins; else the file's value."""
    merged = dict(values)
    merged.update({name: value for name, value in environ.items() if value.strip()})
    return merged


def shadowed(environ: Mapping[str, str], values: Mapping[str, str]) -> list[str]:
    """Names set (non-empty) both in the environment and in the file, to different values: the environment wins."""
    return sorted(
        name
        for name, value in values.items()
        if value.strip() and environ.get(name, "").strip() and environ[name].strip() != value.strip()
    )


# --- settings that decide where a credential or a token is sent (the contract's list) ---------------------
GRAPH_ROUTES = ("GRAPH_CLOUD", "GRAPH_AUTHORITY_HOST", "GRAPH_BASE_URL")  # the Graph credential and its tokens
STORAGE_ROUTES = tuple(
    f"AzureWebJobsStorage__{name}" for name in ("tableServiceUri", "queueServiceUri", "blobServiceUri", "accountName")
)
IDENTITY_ROUTES = ("AZURE_AUTHORITY_HOST",)  # azure-identity's authority: the storage identity's token requests
TOPIC_ROUTES = ("CALL_EVENTS_TOPIC_ENDPOINT",)  # the topic key, else the storage identity's token
TRANSPORT_ROUTES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # and any *_proxy of https or all: every credential
_PROXIES = ("https_proxy", "all_proxy")  # requests reads proxy variables in any case
ENVIRONMENT, FILE = "environment", "file"


def _source(name: str, environ: Mapping[str, str], values: Mapping[str, str]) -> str | None:
    if environ.get(name, "").strip():
        return ENVIRONMENT
    return FILE if values.get(name, "").strip() else None


def _credential_source(name: str, environ: Mapping[str, str], values: Mapping[str, str]) -> str | None:
    """Where a credential comes from; the environment holding the file's own value counts as the file."""
    source = _source(name, environ, values)
    if source == ENVIRONMENT and environ[name].strip() == values.get(name, "").strip():
        return FILE  # the folder's author holds it already: nothing of the environment's to carry away
    return source


def _credentials(environ: Mapping[str, str], values: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """The credentials the command line may send, by what routes them: (what it is, where it comes from)."""
    found: dict[str, tuple[str, str]] = {}
    graph = next((name for name in CREDENTIAL_SETTINGS if _source(name, environ, values)), None)
    if graph == "GRAPH_MANAGED_IDENTITY_CLIENT_ID":  # its assertion comes from this machine's identity
        found["graph"] = ("the managed identity of GRAPH_MANAGED_IDENTITY_CLIENT_ID", ENVIRONMENT)
    elif graph is not None:
        found["graph"] = (graph, _credential_source(graph, environ, values) or ENVIRONMENT)
    connection = _credential_source("AzureWebJobsStorage", environ, values)
    identity = ("the storage identity (AzureWebJobsStorage__credential, or the signed-in user)", ENVIRONMENT)
    found["storage"] = ("AzureWebJobsStorage", connection) if connection else identity
    if not connection:  # azure-identity is in use only without a connection string
        found["identity"] = identity
    key = _credential_source("CALL_EVENTS_TOPIC_KEY", environ, values)
    found["topic"] = ("CALL_EVENTS_TOPIC_KEY", key) if key else identity
    return found


def _carried(name: str) -> tuple[str, ...]:
    """Which credentials a routing setting would carry; () when `name` routes none."""
    if name in GRAPH_ROUTES:
        return ("graph",)
    if name in STORAGE_ROUTES:
        return ("storage",)
    if name in IDENTITY_ROUTES:
        return ("identity",)
    if name in TOPIC_ROUTES:
        return ("topic",)
    if name in TRANSPORT_ROUTES or name.lower() in _PROXIES:
        return ("graph", "storage")  # what the command line itself sends (events reach the topic from the app)
    return ()


def _changes_a_route(name: str, merged: Mapping[str, str]) -> bool:
    """Whether taking `name` changes where anything is sent (the sample's `GRAPH_CLOUD=global` does not)."""
    if name not in GRAPH_ROUTES and name not in STORAGE_ROUTES:
        return True
    with_it = load_settings(merged)
    without = load_settings({key: value for key, value in merged.items() if key != name})
    if name in GRAPH_ROUTES:
        return (with_it.cloud, with_it.graph_base_url, with_it.authority_host) != (
            without.cloud,
            without.graph_base_url,
            without.authority_host,
        )

    def uris(settings: Settings) -> tuple[str | None, ...]:
        storage = settings.storage
        return (None, None) if storage is None else (storage.table_service_uri, storage.queue_service_uri)

    return uris(with_it) != uris(without)


def routing_problems(environ: Mapping[str, str], values: Mapping[str, str]) -> list[str]:
    """The file's settings that would send a credential of the environment somewhere the file chose.

    A setting that decides where a credential or a token goes is taken from local.settings.json only when
    every credential it would carry comes from the file too, so a folder cannot redirect a secret held in
    the environment. Names only: a value may be a secret.
    """
    merged = merge_settings(environ, values)
    credentials = _credentials(environ, values)
    problems = []
    for name in sorted(values):
        carried = [credentials[kind] for kind in _carried(name) if kind in credentials]
        from_environment = sorted({what for what, source in carried if source == ENVIRONMENT})
        if _source(name, environ, values) != FILE or not from_environment or not _changes_a_route(name, merged):
            continue
        problems.append(
            f"{name} is set in {LOCAL_SETTINGS_FILE}, but it would carry {' and '.join(from_environment)} from "
            f"the environment: a folder's file may not decide where a credential of the environment is sent "
            f"(set {name} in the environment too, or take that credential from the file as well)"
        )
    return problems


@dataclass(frozen=True)
class Loaded:
    settings: Settings
    file: Path
    file_found: bool
    shadowed: list[str]  # names only: a value may be a secret


def load(folder: Path, environ: MutableMapping[str, str] | None = None) -> Loaded:
    """The settings of a command run in `folder`, from `environ` (the process environment by default).

    Like the Functions host, which hands `Values` to the worker as environment variables, this puts the
    file's values into `environ` where unset, so `REQUESTS_CA_BUNDLE`, `HTTPS_PROXY`/`NO_PROXY` and the
    `AZURE_*` variables of azure-identity apply to the command line as they do under `func start`.
    """
    environ = os.environ if environ is None else environ
    path = folder / LOCAL_SETTINGS_FILE
    values = read_local_settings(path)
    refused = routing_problems(environ, values)
    if refused:  # before anything is sent, and before the file's values reach the environment
        raise SettingsError(refused)
    merged = merge_settings(environ, values)
    hidden = shadowed(environ, values)
    for name, value in values.items():
        if value.strip() and not environ.get(name, "").strip():
            environ[name] = value
    return Loaded(load_settings(merged), path, path.is_file(), hidden)
