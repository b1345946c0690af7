-- The event journal: every event the daemon handled, in the order it handled them.
-- AUTOINCREMENT so an id is never reused, which lets readers page by id.
CREATE TABLE journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    device TEXT,
    station TEXT,
    payload TEXT NOT NULL
);

CREATE INDEX journal_at_ms ON journal (at_ms);
