"""The tolerant row reader (shared/storage/_rows.py): a row the app cannot read costs that row, never the others;
it is logged with its keys (quoted, since anyone may have written them), counted, and left in place."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from shared.errors import UnreadableRow
from shared.models import CallRecord
from shared.storage._rows import SkippedRows, count_rows, read_rows

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
GOOD = [CallRecord(f"c{i}", None, NOW, f"00000000-0000-4000-8000-{i:012d}").to_entity() for i in range(3)]
FOREIGN = {"PartitionKey": "zz", "RowKey": 'x"y\nERROR forged', "Name": "another program's"}
DAMAGED = {**GOOD[0], "RegistrationId": "not a guid"}


def test_readable_rows_are_read_and_the_others_skipped_logged_and_counted(caplog):
    skipped = SkippedRows()
    with caplog.at_level(logging.WARNING, logger="shared.storage"):
        records = read_rows([GOOD[0], FOREIGN, GOOD[1], DAMAGED, GOOD[2]], skipped)
    assert [r.call_id for r in records] == ["c0", "c1", "c2"]
    assert skipped.count == 2
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings[0] == (
        'calls row skipped partitionKey=zz rowKey="x\\"y\\nERROR\\u0020forged" '
        'reason="CallId\\u0020is\\u0020missing\\u0020or\\u0020not\\u0020a\\u0020valid\\u0020callId"; '
        "the row is left in place"
    )  # each value from outside quoted: one line, and no forged key=value pair
    assert 'reason="RegistrationId\\u0020is' in warnings[1] and len(warnings) == 2


def test_without_a_tally_the_skipped_rows_are_logged_all_the_same(caplog):
    with caplog.at_level(logging.WARNING, logger="shared.storage"):
        assert read_rows([DAMAGED]) == []
    assert len(caplog.records) == 1


def test_counting_leaves_unreadable_rows_out_without_a_word(caplog):
    with caplog.at_level(logging.WARNING, logger="shared.storage"):
        assert count_rows([GOOD[0], FOREIGN, DAMAGED, GOOD[1]]) == 2
    assert caplog.records == []


def test_the_tally_counts_from_many_threads():
    skipped = SkippedRows()
    error = UnreadableRow("x")

    def skip() -> None:
        for _ in range(500):
            skipped.add(FOREIGN, error, log=False)

    threads = [threading.Thread(target=skip) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert skipped.count == 2000
