-- Writes made once per key. Every write stores its key here in its own transaction, with
-- its answer: a client's `Idempotency-Key` (kept IDEMPOTENCY_TTL_SECS, so a repeat
-- answers the first answer again), or a key of the server's own for each write (kept a
-- few minutes, so that a write whose COMMIT got no answer can learn whether it was
-- committed before it is tried again). A table of its own: the old backend never reads
-- it, and nothing about the lead tables changes.

SET LOCAL lock_timeout = '5s';

CREATE TABLE letip_write_key (
    key         text NOT NULL,
    -- The client's key, or the server's own: two namespaces.
    client      boolean NOT NULL,
    -- The attempt that stored it (one per request the server handles), so that settling
    -- a lost COMMIT tells its own row from another request's.
    attempt     text NOT NULL,
    -- What the request was (method, path and body, hashed): a repeat must match it.
    fingerprint text NOT NULL,
    -- The answer: its HTTP status and its JSON (empty when it has no body).
    status      smallint NOT NULL,
    answer      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client, key)
);

CREATE INDEX letip_write_key_created_at ON letip_write_key (created_at);
