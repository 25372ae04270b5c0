-- Accounts are keyed by (sdkappid, user_id): apps never see each other's users.
-- user_id uses the "C" collation so keyset pagination orders bytes exactly as SQLite's BINARY does.
CREATE TABLE IF NOT EXISTS accounts (
    sdkappid   BIGINT  NOT NULL,
    user_id    TEXT    COLLATE "C" NOT NULL,
    nick       TEXT    NOT NULL DEFAULT '',
    face_url   TEXT    NOT NULL DEFAULT '',
    created_at BIGINT  NOT NULL,            -- unix seconds
    disabled   BOOLEAN NOT NULL DEFAULT FALSE,
    -- Tickets issued at or before this second are revoked (admin kick); 0 = none.
    revoked_at BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (sdkappid, user_id)
);
