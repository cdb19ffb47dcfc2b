-- Appointment calendar (issue 4): businesses, providers, services, hours, closures, appointments,
-- and the log of the model's tool calls.
--
-- Conventions:
--   * Instants that rules compare (appointment start/end) are UTC text 'YYYY-MM-DDTHH:MM:SSZ'
--     (fixed width, so text order is time order; CHECKed below). Audit timestamps
--     (created_at, updated_at) are RFC 3339 UTC with milliseconds, like the calls table.
--   * Local dates are 'YYYY-MM-DD'; wall-clock times are minutes after local midnight (0-1440)
--     in the business's IANA zone (businesses.timezone).
--   * Providers and services are never deleted (appointments keep pointing at them); a calendar
--     import marks the ones missing from the file inactive.

CREATE TABLE IF NOT EXISTS businesses (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    key                   TEXT    NOT NULL UNIQUE,          -- slug from the calendar file
    name                  TEXT    NOT NULL,
    timezone              TEXT    NOT NULL,                 -- IANA zone, e.g. Europe/Berlin
    address               TEXT    NOT NULL DEFAULT '',
    phone                 TEXT    NOT NULL DEFAULT '',
    currency              TEXT    NOT NULL DEFAULT '',      -- ISO 4217 code of the prices
    min_lead_minutes      INTEGER NOT NULL DEFAULT 60  CHECK (min_lead_minutes >= 0),
    slot_interval_minutes INTEGER NOT NULL DEFAULT 15  CHECK (slot_interval_minutes BETWEEN 1 AND 1440),
    max_days_ahead        INTEGER NOT NULL DEFAULT 90  CHECK (max_days_ahead >= 0),
    updated_at            TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS providers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    business_id INTEGER NOT NULL REFERENCES businesses (id),
    key         TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL DEFAULT 'staff' CHECK (kind IN ('staff', 'room')),
    role        TEXT    NOT NULL DEFAULT '',
    own_hours   INTEGER NOT NULL DEFAULT 0 CHECK (own_hours IN (0, 1)),  -- 1: weekly_hours rows restrict them
    position    INTEGER NOT NULL DEFAULT 0,              -- order of preference (file order)
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    UNIQUE (business_id, key)
);

CREATE TABLE IF NOT EXISTS services (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    business_id      INTEGER NOT NULL REFERENCES businesses (id),
    key              TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    description      TEXT    NOT NULL DEFAULT '',
    duration_minutes INTEGER NOT NULL CHECK (duration_minutes BETWEEN 1 AND 1440),
    buffer_minutes   INTEGER NOT NULL DEFAULT 0 CHECK (buffer_minutes BETWEEN 0 AND 1440),
    price_cents      INTEGER CHECK (price_cents IS NULL OR price_cents >= 0),
    position         INTEGER NOT NULL DEFAULT 0,
    active           INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    UNIQUE (business_id, key)
);

-- Which providers offer which service, with the service's order of preference.
CREATE TABLE IF NOT EXISTS service_providers (
    service_id  INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    provider_id INTEGER NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (service_id, provider_id)
);

-- Weekly opening hours: provider_id NULL = the business, else that provider's own hours.
CREATE TABLE IF NOT EXISTS weekly_hours (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    business_id  INTEGER NOT NULL REFERENCES businesses (id),
    provider_id  INTEGER REFERENCES providers (id) ON DELETE CASCADE,
    weekday      INTEGER NOT NULL CHECK (weekday BETWEEN 0 AND 6),        -- 0 = Monday
    opens_minute INTEGER NOT NULL CHECK (opens_minute BETWEEN 0 AND 1439),
    closes_minute INTEGER NOT NULL CHECK (closes_minute BETWEEN 1 AND 1440),
    CHECK (opens_minute < closes_minute)
);
CREATE INDEX IF NOT EXISTS weekly_hours_business ON weekly_hours (business_id, provider_id, weekday);

-- Closures and holidays: whole local days, or a daily span; provider_id NULL = the business.
CREATE TABLE IF NOT EXISTS closures (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    business_id  INTEGER NOT NULL REFERENCES businesses (id),
    provider_id  INTEGER REFERENCES providers (id) ON DELETE CASCADE,
    first_day    TEXT    NOT NULL,
    last_day     TEXT    NOT NULL,
    start_minute INTEGER CHECK (start_minute IS NULL OR start_minute BETWEEN 0 AND 1439),
    end_minute   INTEGER CHECK (end_minute IS NULL OR end_minute BETWEEN 1 AND 1440),
    reason       TEXT    NOT NULL DEFAULT '',
    CHECK (first_day <= last_day),
    CHECK ((start_minute IS NULL) = (end_minute IS NULL)),
    CHECK (start_minute IS NULL OR start_minute < end_minute)
);
CREATE INDEX IF NOT EXISTS closures_business ON closures (business_id, last_day);

-- Appointments. A reschedule marks the old row 'rescheduled' and inserts a new 'booked' row with
-- the same confirmation code (replaces_id points back), so history is kept and the caller's code
-- stays valid. The provider is busy in [start_utc, block_end_utc) (service + buffer).
CREATE TABLE IF NOT EXISTS appointments (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    business_id       INTEGER NOT NULL REFERENCES businesses (id),
    provider_id       INTEGER NOT NULL REFERENCES providers (id),
    service_id        INTEGER NOT NULL REFERENCES services (id),
    start_utc         TEXT    NOT NULL,
    end_utc           TEXT    NOT NULL,
    block_end_utc     TEXT    NOT NULL,
    customer_name     TEXT    NOT NULL,
    phone             TEXT    NOT NULL,                 -- as given
    phone_digits      TEXT    NOT NULL DEFAULT '',      -- digits only, for look-ups
    notes             TEXT    NOT NULL DEFAULT '',
    status            TEXT    NOT NULL DEFAULT 'booked'
                      CHECK (status IN ('booked', 'cancelled', 'rescheduled')),
    confirmation_code TEXT    NOT NULL,
    call_id           TEXT,                             -- SIP Call-ID that made this row
    request_key       TEXT UNIQUE,                      -- idempotency key of the tool call
    replaces_id       INTEGER REFERENCES appointments (id),
    sequence          INTEGER NOT NULL DEFAULT 0,       -- iCalendar SEQUENCE
    cancel_reason     TEXT,
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL,
    CHECK (start_utc GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
    CHECK (end_utc GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
    CHECK (block_end_utc GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
    CHECK (start_utc < end_utc AND end_utc <= block_end_utc)
);
-- One active row per confirmation code, and never two active rows of a provider at one start.
CREATE UNIQUE INDEX IF NOT EXISTS appointments_active_code
    ON appointments (confirmation_code) WHERE status = 'booked';
CREATE UNIQUE INDEX IF NOT EXISTS appointments_active_start
    ON appointments (provider_id, start_utc) WHERE status = 'booked';
CREATE INDEX IF NOT EXISTS appointments_provider_time
    ON appointments (provider_id, status, start_utc);
CREATE INDEX IF NOT EXISTS appointments_business_time
    ON appointments (business_id, start_utc);
CREATE INDEX IF NOT EXISTS appointments_phone ON appointments (phone_digits);
CREATE INDEX IF NOT EXISTS appointments_code ON appointments (confirmation_code);

-- Backing constraint for the booking transaction: no two booked rows of one provider may
-- overlap, whatever code writes them.
CREATE TRIGGER IF NOT EXISTS appointments_no_overlap_insert
BEFORE INSERT ON appointments
WHEN NEW.status = 'booked'
BEGIN
    SELECT RAISE(ABORT, 'appointment overlaps a booked appointment of the same provider')
    WHERE EXISTS (
        SELECT 1 FROM appointments a
        WHERE a.provider_id = NEW.provider_id
          AND a.status = 'booked'
          AND a.start_utc < NEW.block_end_utc
          AND NEW.start_utc < a.block_end_utc
    );
END;

CREATE TRIGGER IF NOT EXISTS appointments_no_overlap_update
BEFORE UPDATE OF status, provider_id, start_utc, block_end_utc ON appointments
WHEN NEW.status = 'booked'
BEGIN
    SELECT RAISE(ABORT, 'appointment overlaps a booked appointment of the same provider')
    WHERE EXISTS (
        SELECT 1 FROM appointments a
        WHERE a.provider_id = NEW.provider_id
          AND a.status = 'booked'
          AND a.id <> NEW.id
          AND a.start_utc < NEW.block_end_utc
          AND NEW.start_utc < a.block_end_utc
    );
END;

-- Every function call the model made, with its result and latency.
CREATE TABLE IF NOT EXISTS tool_calls (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id     TEXT    NOT NULL,               -- SIP Call-ID
    name        TEXT    NOT NULL,               -- function name
    arguments   TEXT    NOT NULL,               -- JSON text as received
    result      TEXT    NOT NULL,               -- JSON text sent back (function_call_output)
    error       TEXT,                           -- error code and message, NULL on success
    duration_ms INTEGER NOT NULL CHECK (duration_ms >= 0),
    created_at  TEXT    NOT NULL                -- RFC 3339 UTC
);
CREATE INDEX IF NOT EXISTS tool_calls_call_id ON tool_calls (call_id);
