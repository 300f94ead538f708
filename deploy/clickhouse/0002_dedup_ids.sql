-- c2m-pulse migration 0002: event ids seen, per source partition, so dedup survives restarts.
-- Written with every flush (before the checkpoint), read back on restore for the ids still
-- inside the dedup horizon. TTL on write time only: event time may be old on a replay.

CREATE TABLE IF NOT EXISTS {db}.dedup_ids
(
    source_topic     LowCardinality(String),
    source_partition UInt16,
    hour             UInt32 COMMENT 'event ts // 1 h',
    id_hash          UInt64 COMMENT '64-bit BLAKE2b of event_id',
    version          UInt64 COMMENT 'partition position of the flush that wrote it',
    written_at       DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, source_partition, hour, id_hash)
TTL written_at + INTERVAL 30 DAY;
