-- Issue 9: what returns and self-check must never lose.

-- Transactions accepted while the library system was offline, replayed in id order when it
-- is back (SIP2 offline fields: no-block, original transaction date). A row is committed
-- before the patron is told the transaction is done.
--   state: queued -> replaying -> done | failed (a staff worklist entry) | resolved (staff)
-- A row found in `replaying` after a restart is checked with item information before any
-- resend, so a transaction is never replayed twice.
CREATE TABLE offline_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL,
    kind TEXT NOT NULL,              -- checkin | checkout
    item_id TEXT NOT NULL,
    patron TEXT,                     -- checkout only
    at_ms BIGINT NOT NULL,           -- when the patron did it (the replay's transaction date)
    due_ms BIGINT,                   -- checkout only: the due date the patron was given
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,                    -- JSON: the ILS's answer or the error, once replayed
    updated_ms BIGINT NOT NULL
);
CREATE INDEX offline_queue_state ON offline_queue (state, id);

-- Tag security writes the daemon owes: recorded as `pending` before the ILS call, so a
-- crash between the ILS's answer and the tag write leaves a record. A write that failed or
-- whose tag left first is `owed`, completed when the tag shows up on any reader of the
-- site, and `raised` to staff after the grace period (still completed if the tag returns).
--   state: pending -> done | owed | cancelled ; owed -> done | raised ; raised -> done | resolved
CREATE TABLE owed_writes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL,
    uid TEXT NOT NULL,
    item_id TEXT,
    secure INTEGER NOT NULL,         -- 1: must be secured (returned); 0: unsecured (on loan)
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX owed_writes_state ON owed_writes (state, uid);

-- The staff worklist: what the daemon could not finish by itself (failed replays, overdue
-- owed writes, items not diverted, outcomes unknown). Entries are never dropped; staff
-- resolve them (CLI `rfidgw worklist`, API /api/v1/worklist).
CREATE TABLE worklist (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    station TEXT NOT NULL,
    item_id TEXT,
    uid TEXT,
    reason TEXT NOT NULL,
    ref_id BIGINT,                   -- the offline_queue or owed_writes row it is about
    created_ms BIGINT NOT NULL,
    resolved_ms BIGINT,
    resolved_by TEXT,
    resolution TEXT
);
CREATE INDEX worklist_open ON worklist (resolved_ms, id);
