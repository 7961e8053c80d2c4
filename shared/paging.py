"""Continuation tokens of `GET /api/calls` (and `calls list`): where the next page starts, as a key the app writes.

A token names the place as `PP-<RowKey>`, a partition `00`..`63` and 64 lowercase hex digits (docs/architecture.md,
"Listing pages"). Anything else is a token the API could not have issued: `400 invalidRequest`. The service's own
continuation values are opaque and never reach the caller. A token is not a secret and carries no checksum: it only
ever names a position among rows that the function key already lists.
"""

from __future__ import annotations

import re

from shared.errors import InvalidRequest
from shared.models import PARTITIONS

MAX_TOKEN_CHARS = 1024  # the contract's limit; an issued token has 67
_TOKEN = re.compile(r"([0-9]{2})-([0-9a-f]{64})\Z")
_HEX = "0123456789abcdef"
_KEY_LENGTH = 64
_PARTITION_KEYS = tuple(f"{index:02d}" for index in range(PARTITIONS))
_NOT_ISSUED = "continuationToken is not one this API issued"


def encode_token(key: tuple[str, str]) -> str:
    """The token of the page that starts at `key` (an app key: see `first_key_at_or_after`)."""
    return f"{key[0]}-{key[1]}"


def decode_token(value: str) -> tuple[str, str]:
    """(PartitionKey, RowKey) where the page starts; `InvalidRequest` for a token the API could not have issued."""
    match = _TOKEN.match(value) if len(value) <= MAX_TOKEN_CHARS else None
    if match is None or match[1] not in _PARTITION_KEYS:
        raise InvalidRequest(_NOT_ISSUED)
    return match[1], match[2]


def first_key_at_or_after(partition_key: str, row_key: str) -> tuple[str, str] | None:
    """The least key the app could write that sorts at or after (`partition_key`, `row_key`), or None.

    The next page starts at the row after the last one shown; when that row's keys are not the app's (a row
    of another program), every row before the least app key at or after it is unreadable anyway.
    """
    for partition in _PARTITION_KEYS:
        if partition > partition_key:
            return partition, "0" * _KEY_LENGTH
        if partition == partition_key and (row := _first_row_key_at_or_after(row_key)) is not None:
            return partition, row
    return None


def _first_row_key_at_or_after(value: str) -> str | None:
    """The least string of 64 lowercase hex digits that sorts at or after `value` (ordinal order), or None."""
    head = 0
    while head < min(len(value), _KEY_LENGTH) and value[head] in _HEX:
        head += 1
    if head == len(value):  # all hex, 64 digits or fewer: padded with zeros it sorts at or after itself
        return value + "0" * (_KEY_LENGTH - head)
    if head < _KEY_LENGTH:  # value[head] is no hex digit: the least digit above it, else carry to the left
        above = next((digit for digit in _HEX if digit > value[head]), None)
        if above is not None:
            return value[:head] + above + "0" * (_KEY_LENGTH - head - 1)
    for index in range(head - 1, -1, -1):  # the least key above every string that starts with value[:head]
        if value[index] != "f":
            return value[:index] + _HEX[_HEX.index(value[index]) + 1] + "0" * (_KEY_LENGTH - index - 1)
    return None
