-- The gate's loans cache (database security mode): whether an item is on loan, as last
-- learned from the daemon's own transactions, an ILS item-information lookup, or an import.
-- The gate decides from an in-memory copy loaded at start; this table makes it survive.
CREATE TABLE loans_cache (
    item_id TEXT PRIMARY KEY,
    on_loan INTEGER NOT NULL,
    updated_ms BIGINT NOT NULL,
    source TEXT NOT NULL
);

-- Alarm retention prunes by kind and time.
CREATE INDEX journal_kind_at_ms ON journal (kind, at_ms);
