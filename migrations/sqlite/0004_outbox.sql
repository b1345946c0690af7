-- Issue 10: the durable outbox. Each northbound consumer (MQTT, each webhook) reads the
-- journal from its cursor: the id of the last event it delivered. Journal pruning never
-- goes past the slowest cursor, unless a consumer lags by more than
-- northbound.max_lag_events (then its oldest events are skipped, with an alert).
CREATE TABLE outbox_cursors (
    consumer TEXT PRIMARY KEY,
    last_id BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    skipped BIGINT NOT NULL DEFAULT 0   -- events skipped because the consumer lagged too far
);
