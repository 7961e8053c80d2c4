"""The contract of `Rows`, the seam under `CallsTable`: Table Storage's answers to each operation on the calls
table's rows (409, 404, 412, a changeset all or none), from Azure and from memory alike."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import RowModified, TransactionFailed
from tests.contract.conftest import Backend


def row(key: str, note: str = "0", partition: str = "07") -> dict[str, Any]:
    return {"PartitionKey": partition, "RowKey": key, "CallId": key, "Note": note}


def wire(entity: dict[str, Any]) -> dict[str, Any]:
    """`entity` as the wire path writes it: every string typed."""
    typed = dict(entity)
    typed.update({name + "@odata.type": "Edm.String" for name, value in entity.items() if isinstance(value, str)})
    return typed


def etag_of(backend: Backend, key: str, partition: str = "07") -> str:
    found = backend.rows.get(partition, key)
    assert found is not None
    etag = getattr(found, "metadata", {}).get("etag")
    assert isinstance(etag, str) and etag
    return etag


def note_of(backend: Backend, key: str) -> str | None:
    found = backend.rows.get("07", key)
    return None if found is None else found["Note"]


def test_create_answers_false_over_a_row_that_holds_the_keys(backend: Backend):
    assert backend.rows.create(row("a", "first")) is True
    assert backend.rows.create(row("a", "second")) is False
    found = backend.rows.get("07", "a")
    assert found is not None and found["Note"] == "first"
    assert backend.rows.get("07", "missing") is None


def test_replace_needs_the_etag_the_row_was_read_with(backend: Backend):
    backend.rows.create(row("a", "first"))
    etag = etag_of(backend, "a")
    new = backend.rows.replace(row("a", "second"), etag)
    assert new and new != etag and etag_of(backend, "a") == new
    with pytest.raises(RowModified):
        backend.rows.replace(row("a", "third"), etag)  # 412: changed since
    assert note_of(backend, "a") == "second"
    assert backend.rows.replace(row("gone", "x"), new) is None  # 404: never re-created
    assert backend.rows.get("07", "gone") is None


def test_delete_needs_the_etag_and_answers_false_for_a_row_gone(backend: Backend):
    backend.rows.create(row("a"))
    etag = etag_of(backend, "a")
    backend.rows.replace(row("a", "changed"), etag)
    with pytest.raises(RowModified):
        backend.rows.delete("07", "a", etag)
    assert backend.rows.delete("07", "a", etag_of(backend, "a")) is True
    assert backend.rows.delete("07", "a", etag) is False


def test_a_changeset_is_written_all_or_none(backend: Backend):
    for key in ("a", "b", "c"):
        backend.rows.create(row(key))
    etags = [etag_of(backend, key) for key in ("a", "b", "c")]
    new = [
        e or "" for e in backend.rows.replace_all([(wire(row(k, "1")), e) for k, e in zip("abc", etags, strict=True)])
    ]
    assert len(new) == 3 and all(e and e not in etags for e in new)
    assert [etag_of(backend, key) for key in "abc"] == new

    with pytest.raises(TransactionFailed) as refused:  # b's ETag is stale: nothing is written
        backend.rows.replace_all(
            [(wire(row(k, "2")), e) for k, e in zip("abc", [new[0], etags[1], new[2]], strict=True)]
        )
    assert refused.value.conflict and refused.value.index == 1
    assert all(note_of(backend, key) == "1" for key in "abc")

    backend.rows.delete("07", "c", new[2])
    with pytest.raises(TransactionFailed) as gone:  # c was deleted: nothing is written, c is not re-created
        backend.rows.replace_all([(wire(row(k, "3")), e) for k, e in zip("abc", new, strict=True)])
    assert gone.value.conflict
    assert backend.rows.get("07", "c") is None and note_of(backend, "a") == "1"


def test_pages_read_in_key_order_a_partition_or_all_with_only_what_is_selected(backend: Backend):
    keys = [f"k{i:02d}" for i in range(7)]
    for key in keys:
        backend.rows.create(row(key, "n"))
    backend.rows.create(row("x", partition="08"))
    pages = list(backend.rows.pages(partition="07", page_size=3))
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [entity["RowKey"] for page in pages for entity in page] == keys
    everything = [e for page in backend.rows.pages(select=["PartitionKey", "RowKey", "CallId"]) for e in page]
    assert [(e["PartitionKey"], e["RowKey"]) for e in everything] == [("07", k) for k in keys] + [("08", "x")]
    assert "Note" not in everything[0] and everything[0]["CallId"] == "k00"


def test_from_key_reads_on_from_a_key_across_partitions(backend: Backend):
    for partition, key in (("06", "z"), ("07", "a"), ("07", "b"), ("07", "c"), ("09", "a")):
        backend.rows.create(row(key, partition=partition))
    keys = [(e["PartitionKey"], e["RowKey"]) for e in backend.rows.from_key(("07", "b"), 10)]
    assert keys == [("07", "b"), ("07", "c"), ("09", "a")]
    assert [(e["PartitionKey"], e["RowKey"]) for e in backend.rows.from_key(None, 2)] == [("06", "z"), ("07", "a")]
    assert backend.rows.from_key(("09", "b"), 5) == []
