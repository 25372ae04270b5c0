-- Accounts are keyed by (sdkappid, user_id): apps never see each other's users.
CREATE TABLE IF NOT EXISTS accounts (
    sdkappid   INTEGER NOT NULL,
    user_id    TEXT    NOT NULL,
    nick       TEXT    NOT NULL DEFAULT '',
    face_url   TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,            -- unix seconds
    disabled   BOOLEAN NOT NULL DEFAULT FALSE,
    -- Tickets issued at or before this second are revoked (admin kick); 0 = none.
    revoked_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sdkappid, user_id)
) WITHOUT ROWID;
