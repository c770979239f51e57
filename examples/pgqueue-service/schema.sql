-- The tables of the example orders service on a PostgreSQL queue, applied
-- to each run's schema before the service starts.

-- The queue: one row per job. oncecheck sends each job with
--   --send-sql 'INSERT INTO jobs (id, key, type, aggregate, payload) VALUES ($1, $2, $3, $4, $5)'
-- A worker takes a job by writing its lease (lease, locked_until) with
-- SELECT ... FOR UPDATE SKIP LOCKED, or holds its row lock for the whole
-- job (QUEUE_CLAIM=lock); a finished job is done (--done-when done) or
-- deleted.
CREATE TABLE jobs (
    seq          bigserial,
    id           text PRIMARY KEY,
    key          text NOT NULL,
    type         text NOT NULL,
    aggregate    text NOT NULL,
    payload      jsonb NOT NULL,
    done         boolean NOT NULL DEFAULT false,
    lease        text,        -- the token of the attempt that holds it
    locked_until timestamptz, -- until when
    attempts     int NOT NULL DEFAULT 0
);
CREATE INDEX jobs_todo ON jobs (seq) WHERE NOT done;

-- The inbox: the idempotence keys of the jobs applied (a job sent twice
-- under one key is one intent).
CREATE TABLE inbox (
    key text PRIMARY KEY
);

CREATE TABLE orders (
    aggregate text PRIMARY KEY,
    state     jsonb NOT NULL
);

-- The events, written in the job's transaction (--outputs-table events).
CREATE TABLE events (
    id      text PRIMARY KEY,
    cause   text NOT NULL,
    type    text NOT NULL,
    payload jsonb NOT NULL
);
