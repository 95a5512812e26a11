-- smsmta subscriber registry, schema version 1 (PRAGMA user_version).
CREATE TABLE IF NOT EXISTS subscribers (
    msisdn  TEXT PRIMARY KEY,            -- digits, no '+'
    imsi    TEXT UNIQUE,                 -- 15 digits, or NULL
    email   TEXT,                        -- texts also/instead go here as mail, or NULL
    enabled INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS registrations (
    aor      TEXT NOT NULL,              -- the user part of the address of record (IMSI... or digits)
    contact  TEXT NOT NULL,              -- the Contact URI
    expires  INTEGER NOT NULL,           -- seconds since the epoch
    source   TEXT NOT NULL DEFAULT '',   -- where the REGISTER came from (ip:port)
    PRIMARY KEY (aor, contact)
);
CREATE TABLE IF NOT EXISTS sms_parts (
    key        TEXT NOT NULL,            -- originator / reference / total
    seq        INTEGER NOT NULL,
    total      INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,         -- seconds since the epoch
    part       TEXT NOT NULL,            -- JSON: the part's body and the facts of its request
    PRIMARY KEY (key, seq)
);
CREATE INDEX IF NOT EXISTS sms_parts_first_seen ON sms_parts (first_seen);
CREATE TABLE IF NOT EXISTS seen_messages (
    call_id  TEXT NOT NULL,              -- a MESSAGE answered 2xx: its Call-ID,
    cseq     INTEGER NOT NULL,           -- CSeq number
    from_tag TEXT NOT NULL,              -- and From tag
    expires  INTEGER NOT NULL,           -- end of its duplicate window, seconds since the epoch
    PRIMARY KEY (call_id, cseq, from_tag)
);
CREATE INDEX IF NOT EXISTS seen_messages_expires ON seen_messages (expires);
PRAGMA user_version = 2;
