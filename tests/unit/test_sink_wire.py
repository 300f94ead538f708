"""The c2m.sink wire format: chunking keeps checkpoints last; decode inverts encode."""

from __future__ import annotations

import orjson
import pytest

from streams.clickhouse.store import PartitionSnapshot
from streams.core.engine import Checkpoint, FlushBatch, LateEvent, Record
from streams.sink import (
    decode_flush,
    decode_loaded,
    encode_flush,
    encode_loaded,
    merge_flushes,
)

BIG_HASH = 2**64 - 5  # visitor and id hashes are unsigned 64-bit


def _batch(n_rows: int) -> tuple[FlushBatch, list[LateEvent]]:
    rows = [("shop.orders", 1, 300, 1_700_000_100 + i, "袜子", "蓝", "M", "10-20", "🏝 海南",
             1, 2, 30_000, 0, 0, 0, 77) for i in range(n_rows)]
    batch = FlushBatch(
        rows=rows,
        checkpoints=[Checkpoint("shop.orders", 1, 77, 1_700_000_000_000, 80, 70, 5, 4, 1),
                     Checkpoint("shop.pageviews", 0, 12, None, 12, 12, 0, 0, 0)],
        dedup_rows=[("shop.orders", 1, 472_222, [BIG_HASH, 1, 2], 77)],
        visitor_rows=[(300, 1_700_000_100, "a", "b", "c", "d", "e", [3, BIG_HASH])],
        sku_rows=[("shop.orders", 1, "SKU-袜", 1_700_000_000, 1, 3, 0, 0, 2, 0, 0, -1, 0, 77)],
        product_rows=[("SKU-袜", 1_699_000_000_000, "F001", "袜子", "蓝", "M", "0-10", 9.9,
                       3, 500)],
    )
    late = [LateEvent(Record("shop.orders", 1, 50, 1, b"k", '{"x":"\u202e"}'.encode()),
                      "e1", "order_placed", 1_600_000_000_000, 1_699_000_000_000)]
    return batch, late


def test_roundtrip_and_chunking_keep_checkpoints_in_the_last_message() -> None:
    batch, late = _batch(12)
    msgs = encode_flush(batch, late, 600_000, max_rows=5)
    # 12 rows + 2 visitor hashes + 3 dedup hashes + late + SKU + product = 20, 5 each
    assert len(msgs) == 4
    decoded = [decode_flush(m) for m in msgs]
    assert all(not b.checkpoints for b, _, _ in decoded[:-1])
    assert decoded[-1][0].checkpoints == batch.checkpoints
    # every visitor row comes before the first state row (a writer that writes the first
    # messages alone refreshes only cells whose visitors it has written)
    first_rows = min(i for i, (b, _, _) in enumerate(decoded) if b.rows)
    assert all(not b.visitor_rows for b, _, _ in decoded[first_rows + 1:])
    assert decoded[first_rows][0].visitor_rows or any(
        b.visitor_rows for b, _, _ in decoded[:first_rows])
    [(merged, merged_late, lateness)] = merge_flushes(decoded)
    assert lateness == 600_000
    assert merged.rows == batch.rows
    assert merged.visitor_rows == batch.visitor_rows
    assert merged.dedup_rows == batch.dedup_rows
    assert merged.sku_rows == batch.sku_rows
    assert merged.product_rows == batch.product_rows
    assert [(e.record.topic, e.record.partition, e.record.offset, e.record.value, e.event_id,
             e.ts_ms, e.watermark_ms) for e in merged_late] == [
        (e.record.topic, e.record.partition, e.record.offset, e.record.value, e.event_id,
         e.ts_ms, e.watermark_ms) for e in late]


def test_merge_groups_by_lateness_and_keeps_order() -> None:
    a, b = _batch(2), _batch(3)
    parts = [decode_flush(encode_flush(a[0], a[1], 1)[0]),
             decode_flush(encode_flush(b[0], [], 1)[0]),
             decode_flush(encode_flush(b[0], [], 2)[0])]
    merged = {lat: (bt, lt) for bt, lt, lat in merge_flushes(parts)}
    assert merged[1][0].rows == a[0].rows + b[0].rows and len(merged[1][1]) == 1
    assert merged[2][0].rows == b[0].rows


def test_version_1_messages_are_still_read() -> None:
    """Flushes on c2m.sink written before arrays (one hash a row) decode to array rows."""
    old = {"v": 1, "rows": [], "checkpoints": [], "late": [], "lateness_ms": 0,
           "visitors": [[300, 60, "a", "b", "c", "d", "e", BIG_HASH]],
           "dedup": [["shop.orders", 1, 472_222, BIG_HASH, 77]]}
    batch, _, _ = decode_flush(orjson.dumps(old))
    assert batch.visitor_rows == [(300, 60, "a", "b", "c", "d", "e", [BIG_HASH])]
    assert batch.dedup_rows == [("shop.orders", 1, 472_222, [BIG_HASH], 77)]


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        decode_flush(orjson.dumps({"v": 99}))


def test_restore_payload_roundtrip() -> None:
    cp = Checkpoint("shop.orders", 3, 10, 5, 10, 9, 1, 0, 0)
    loaded = PartitionSnapshot(
        cp, [((300, 60, "a", "b", "c", "d", "e"), [1, 2, 3, 0, 0, 4])], [(5, BIG_HASH)],
        [(("SKU-袜", 3600), [1, 3, 0, 0, 2, 5, 5, 3_600_100, 40])],
    )
    doc = orjson.loads(orjson.dumps(encode_loaded(loaded)))
    assert decode_loaded(doc) == loaded
    assert decode_loaded(orjson.loads(orjson.dumps(encode_loaded(None)))) is None
