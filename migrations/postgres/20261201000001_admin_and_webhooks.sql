-- A policy an admin set through the API (PUT /policy): it wins over the config file's until deleted.
CREATE TABLE IF NOT EXISTS app_policies (
    sdkappid               BIGINT  PRIMARY KEY,
    mode                   TEXT    NOT NULL,
    web_instances          INTEGER NOT NULL,
    instances_per_platform INTEGER NOT NULL,
    updated_at             BIGINT  NOT NULL        -- unix seconds
);

-- State-change webhooks waiting for delivery, one row per group the writer wrote (a JSON array of events): one
-- row per group, not per event, keeps the cost of the outbox to a few microseconds an event. A row is deleted once
-- every event in it is delivered or dead-lettered. `id` is the order rows were written in (delivery tails it).
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id            BIGSERIAL PRIMARY KEY,
    writer        TEXT    NOT NULL,                -- the node that wrote it
    events        INTEGER NOT NULL,                -- how many events it holds
    created_at_ms BIGINT  NOT NULL,
    batch         TEXT    NOT NULL
);

-- Events given up on after max_attempts, until an admin retries or drops them.
CREATE TABLE IF NOT EXISTS webhook_dead_letters (
    id            BIGSERIAL PRIMARY KEY,
    event_id      TEXT    NOT NULL,
    sdkappid      BIGINT  NOT NULL,
    user_id       TEXT    COLLATE "C" NOT NULL,
    seq           BIGINT  NOT NULL,
    body          TEXT    NOT NULL,
    client_ip     TEXT    NOT NULL,
    opt_platform  TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    attempts      INTEGER NOT NULL,
    last_error    TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_dead_letters_app ON webhook_dead_letters (sdkappid, id);

-- One node at a time delivers webhooks (so one user's events go out in order); it holds this lease.
CREATE TABLE IF NOT EXISTS webhook_lease (
    name        TEXT   PRIMARY KEY,
    holder      TEXT   NOT NULL,
    expires_ms  BIGINT NOT NULL
);
