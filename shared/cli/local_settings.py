"""The command line's settings: a non-empty environment variable, else `Values` of `local.settings.json`.

Only the command line reads `local.settings.json` (the Functions host does it for the app); what it hands
to `shared.settings.load_settings` is one merged mapping.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from shared.errors import SettingsError, SettingsFileError
from shared.settings import Settings, load_settings

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
    merged = merge_settings(environ, values)
    hidden = shadowed(environ, values)
    for name, value in values.items():
        if value.strip() and not environ.get(name, "").strip():
            environ[name] = value
    return Loaded(load_settings(merged), path, path.is_file(), hidden)
