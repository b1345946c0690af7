-- Issue 13: the dashboard's statistics, kept as rollups so that a year of journal (a
-- million events and more) answers in milliseconds: one row per UTC hour (and one per hour
-- and sort bin), filled by triggers in the same transaction as the journal row (nothing in
-- the daemon's write path changes, and a crash cannot leave them apart). Journal pruning
-- leaves the rollups alone: the statistics outlive the events they count.
CREATE TABLE stats_hourly (
    hour_ms BIGINT NOT NULL PRIMARY KEY, -- the hour's start, ms since the Unix epoch (UTC)
    loans BIGINT NOT NULL,           -- items lent (checked out, renewed, queued offline), at
                                     -- self-check stations and through the SIP2 face
    returns BIGINT NOT NULL,         -- items taken back (checked in, queued offline)
    alarms BIGINT NOT NULL,          -- gate alarms
    people_in BIGINT NOT NULL,       -- people counted in by the gates
    people_out BIGINT NOT NULL,      -- … and out
    people_intervals BIGINT NOT NULL, -- counting intervals closed
    ils_calls BIGINT NOT NULL,       -- calls the library system answered (returns, kiosks)
    ils_us BIGINT NOT NULL,          -- their time, summed (µs)
    ils_peak_us BIGINT NOT NULL,     -- the longest (µs)
    ils_errors BIGINT NOT NULL       -- the ILS went offline, or an outcome unknown or failed
) WITHOUT ROWID;

-- Items a return station sent to each sort bin (the exception bin too; not those whose
-- divert failed).
CREATE TABLE stats_bins_hourly (
    hour_ms BIGINT NOT NULL,
    station TEXT NOT NULL,
    bin TEXT NOT NULL,
    items BIGINT NOT NULL,
    PRIMARY KEY (hour_ms, station, bin)
) WITHOUT ROWID;

-- "Borrowed together": the items of each self-check session (no patron: the journal keeps
-- none), so that the items most often borrowed with one item are two index lookups away.
CREATE TABLE loan_sessions (
    station TEXT NOT NULL,
    session TEXT NOT NULL,
    item TEXT NOT NULL,
    title TEXT,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (station, session, item)
) WITHOUT ROWID;
CREATE INDEX loan_sessions_item ON loan_sessions (item);

-- One view names each journal row's metrics and values, so that the trigger (one row) and
-- the backfill (every row) agree by construction. SQLite pushes `id = NEW.id` into each
-- arm (a rowid lookup each).
CREATE VIEW journal_metrics AS
SELECT id, at_ms, 'loans' AS metric, 1 AS value FROM journal
WHERE kind = 'item_loan'
  AND json_extract(payload, '$.outcome') IN ('checked_out', 'renewed', 'queued_offline')
UNION ALL
SELECT id, at_ms, 'returns', 1 FROM journal
WHERE kind = 'item_returned'
  AND json_extract(payload, '$.outcome') IN ('checked_in', 'queued_offline')
UNION ALL
SELECT id, at_ms, CASE json_extract(payload, '$.message') WHEN 'checkin' THEN 'returns'
                  ELSE 'loans' END, 1 FROM journal
WHERE kind = 'kiosk_transaction'
  AND json_extract(payload, '$.message') IN ('checkout', 'renew', 'checkin')
  AND json_extract(payload, '$.outcome') IN ('accepted', 'queued_offline')
UNION ALL
SELECT id, at_ms, 'alarms', 1 FROM journal WHERE kind = 'gate_alarm'
UNION ALL
SELECT id, at_ms, 'people_in', CAST(COALESCE(json_extract(payload, '$.entered'), 0) AS INTEGER)
FROM journal WHERE kind = 'people_counted'
UNION ALL
SELECT id, at_ms, 'people_out', CAST(COALESCE(json_extract(payload, '$.left'), 0) AS INTEGER)
FROM journal WHERE kind = 'people_counted'
UNION ALL
SELECT id, at_ms, 'ils', CAST(COALESCE(json_extract(payload, '$.timing.ils_us'), 0) AS INTEGER)
FROM journal
WHERE kind = 'item_returned' AND json_extract(payload, '$.outcome') IN ('checked_in', 'rejected')
UNION ALL
SELECT id, at_ms, 'ils', CAST(COALESCE(json_extract(payload, '$.took_us'), 0) AS INTEGER)
FROM journal
WHERE kind = 'kiosk_transaction'
  AND json_extract(payload, '$.outcome') IN ('accepted', 'refused', 'answered')
UNION ALL
SELECT id, at_ms, 'ils_errors', 1 FROM journal
WHERE (kind = 'peer_changed' AND json_extract(payload, '$.state') = 'offline')
   OR (kind IN ('item_loan', 'item_returned', 'kiosk_transaction')
       AND json_extract(payload, '$.outcome') IN ('outcome_unknown', 'failed'));

-- The returns that went to a bin.
CREATE VIEW journal_bins AS
SELECT id, at_ms, COALESCE(station, '') AS station, json_extract(payload, '$.bin_name') AS bin
FROM journal
WHERE kind = 'item_returned' AND json_type(payload, '$.bin_name') = 'text'
  AND COALESCE(json_extract(payload, '$.diverted'), 1) = 1;

-- One row's metrics, summed into its hour's columns. Only the kinds the views count wake
-- it; a payload that is not JSON is skipped (json_extract would fail the journal's insert).
CREATE TRIGGER journal_stats AFTER INSERT ON journal
WHEN NEW.kind IN ('item_loan', 'item_returned', 'kiosk_transaction', 'gate_alarm',
                  'people_counted', 'peer_changed')
     AND json_valid(NEW.payload)
BEGIN
    INSERT INTO stats_hourly (hour_ms, loans, returns, alarms, people_in, people_out,
                              people_intervals, ils_calls, ils_us, ils_peak_us, ils_errors)
    SELECT at_ms - (at_ms % 3600000),
           SUM(metric = 'loans'), SUM(metric = 'returns'), SUM(metric = 'alarms'),
           SUM(IIF(metric = 'people_in', value, 0)), SUM(IIF(metric = 'people_out', value, 0)),
           SUM(metric = 'people_in'), SUM(metric = 'ils'), SUM(IIF(metric = 'ils', value, 0)),
           MAX(IIF(metric = 'ils', value, 0)), SUM(metric = 'ils_errors')
    FROM journal_metrics WHERE id = NEW.id GROUP BY 1
    ON CONFLICT (hour_ms) DO UPDATE SET
        loans = loans + excluded.loans, returns = returns + excluded.returns,
        alarms = alarms + excluded.alarms, people_in = people_in + excluded.people_in,
        people_out = people_out + excluded.people_out,
        people_intervals = people_intervals + excluded.people_intervals,
        ils_calls = ils_calls + excluded.ils_calls, ils_us = ils_us + excluded.ils_us,
        ils_peak_us = max(ils_peak_us, excluded.ils_peak_us),
        ils_errors = ils_errors + excluded.ils_errors;
    INSERT INTO stats_bins_hourly (hour_ms, station, bin, items)
    SELECT at_ms - (at_ms % 3600000), station, bin, 1 FROM journal_bins WHERE id = NEW.id
    ON CONFLICT (hour_ms, station, bin) DO UPDATE SET items = items + 1;
END;

CREATE TRIGGER journal_loan_sessions AFTER INSERT ON journal
WHEN NEW.kind = 'item_loan' AND json_valid(NEW.payload)
     AND json_extract(NEW.payload, '$.outcome') IN ('checked_out', 'renewed', 'queued_offline')
     AND json_type(NEW.payload, '$.session') = 'text'
     AND json_type(NEW.payload, '$.item') = 'text'
BEGIN
    INSERT OR IGNORE INTO loan_sessions (station, session, item, title, at_ms)
    VALUES (COALESCE(NEW.station, ''), json_extract(NEW.payload, '$.session'),
            json_extract(NEW.payload, '$.item'), json_extract(NEW.payload, '$.title'),
            NEW.at_ms);
END;

-- What the journal holds already.
INSERT INTO stats_hourly (hour_ms, loans, returns, alarms, people_in, people_out,
                          people_intervals, ils_calls, ils_us, ils_peak_us, ils_errors)
SELECT at_ms - (at_ms % 3600000),
       SUM(metric = 'loans'), SUM(metric = 'returns'), SUM(metric = 'alarms'),
       SUM(IIF(metric = 'people_in', value, 0)), SUM(IIF(metric = 'people_out', value, 0)),
       SUM(metric = 'people_in'), SUM(metric = 'ils'), SUM(IIF(metric = 'ils', value, 0)),
       MAX(IIF(metric = 'ils', value, 0)), SUM(metric = 'ils_errors')
FROM journal_metrics
WHERE id IN (SELECT id FROM journal WHERE json_valid(payload))
GROUP BY 1;

INSERT INTO stats_bins_hourly (hour_ms, station, bin, items)
SELECT at_ms - (at_ms % 3600000), station, bin, COUNT(*) FROM journal_bins
WHERE id IN (SELECT id FROM journal WHERE json_valid(payload))
GROUP BY 1, 2, 3;

INSERT OR IGNORE INTO loan_sessions (station, session, item, title, at_ms)
SELECT COALESCE(station, ''), json_extract(payload, '$.session'), json_extract(payload, '$.item'),
       json_extract(payload, '$.title'), at_ms
FROM journal
WHERE kind = 'item_loan' AND json_valid(payload)
  AND json_extract(payload, '$.outcome') IN ('checked_out', 'renewed', 'queued_offline')
  AND json_type(payload, '$.session') = 'text' AND json_type(payload, '$.item') = 'text';
