-- One row per (app, UTC day, user) that logged in that day (PROTOCOL §8). `day` is 'YYYY-MM-DD'.
CREATE TABLE IF NOT EXISTS daily_active (
    sdkappid INTEGER NOT NULL,
    day      TEXT    NOT NULL,
    user_id  TEXT    NOT NULL,
    PRIMARY KEY (sdkappid, day, user_id)
) WITHOUT ROWID;
