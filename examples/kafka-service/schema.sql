-- The tables of the example orders service, applied to each run's schema.
CREATE TABLE orders (
    aggregate text PRIMARY KEY,
    state     jsonb NOT NULL
);
-- The inbox: the idempotence keys of the messages applied.
CREATE TABLE inbox (
    key text PRIMARY KEY
);
-- The outbox: the events to publish, written with the state change.
CREATE TABLE outbox (
    id      text PRIMARY KEY,
    cause   text NOT NULL,
    type    text NOT NULL,
    payload jsonb NOT NULL,
    sent    boolean NOT NULL DEFAULT false
);
