-- A policy an admin set through the API (PUT /policy): it wins over the config file's until deleted.
CREATE TABLE IF NOT EXISTS app_policies (
    sdkappid               BIGINT   PRIMARY KEY,
    mode                   TEXT     NOT NULL,
    web_instances          INTEGER NOT NULL,
    instances_per_platform INTEGER NOT NULL,
    updated_at             BIGINT   NOT NULL       -- unix seconds
);

-- State-change webhooks waiting for delivery (state 0) or given up on (state 1, a dead letter). Rows are deleted
-- once delivered. `id` is the insertion order (delivery tails it); within a user, `seq` is the event order.
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id              BIGSERIAL PRIMARY KEY,
    event_id        TEXT     NOT NULL UNIQUE,
    sdkappid        BIGINT   NOT NULL,
    user_id         TEXT     COLLATE "C" NOT NULL,
    seq             BIGINT   NOT NULL,
    body            TEXT     NOT NULL,             -- the JSON body, without the per-attempt signature
    client_ip       TEXT     NOT NULL,
    opt_platform    TEXT     NOT NULL,
    created_at_ms   BIGINT   NOT NULL,
    attempts        INTEGER  NOT NULL DEFAULT 0,
    last_error      TEXT     NOT NULL DEFAULT '',
    state           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS webhook_outbox_dead ON webhook_outbox (sdkappid, id) WHERE state = 1;

-- One node at a time delivers webhooks (so one user's events go out in order); it holds this lease.
CREATE TABLE IF NOT EXISTS webhook_lease (
    name        TEXT   PRIMARY KEY,
    holder      TEXT   NOT NULL,
    expires_ms  BIGINT NOT NULL
);
