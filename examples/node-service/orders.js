'use strict';

// An orders service in Node.js, written the way a team writes one: it
// consumes orders commands from NATS JetStream (nats.js) with a durable
// pull consumer, keeps the orders in PostgreSQL (node-postgres) and
// publishes what happened. It reads DATABASE_URL, NATS_URL and
// ONCECHECK_CONSUMER from its environment, as it would read its
// configuration in production, and meets oncecheck's service-mode contract
// (docs/service-mode.md): oncecheck starts it, faults it and checks it,
// black box. It is the Node.js twin of the Go service in examples/service.
//
// The correct version applies each message once with an inbox (the
// message's key, inserted in the transaction of the change) and an outbox
// (the events, written in that transaction, published after the commit
// with their ids as Nats-Msg-Id, then marked sent), and acks last.
// ORDERS_BUG selects a broken variant:
//
//   - ack-first: the message is acked as it arrives, before its work;
//   - dedup-first: the inbox mark is committed in a statement of its own,
//     before the change's transaction;
//   - check-first: the inbox is read before the transaction, and the
//     change is made when the key was not there, whatever the inbox insert
//     then finds (and the outbox insert ignores an id already there):
//     nothing fences an attempt that outlived its ack wait from the
//     attempt that took its copy over.

const { AckPolicy, StringCodec, connect, headers, nanos } = require('nats');
const pg = require('pg');

const { apply, initialOrder } = require('./model');

const STREAM = 'ONCECHECK_IN';
const DURABLE = 'orders';
const BUGS = ['', 'ack-first', 'dedup-first', 'check-first'];
const sc = StringCodec();

function env(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set`);
  }
  return v;
}

class OrdersService {
  constructor(db, js, bug) {
    this.db = db;
    this.js = js;
    this.bug = bug;
  }

  /** handle applies one command. */
  async handle(msg) {
    const h = msg.headers;
    const key = h.get('Oncecheck-Key');
    const agg = h.get('Oncecheck-Aggregate');
    const type = h.get('Oncecheck-Type');
    const body = msg.data.length > 0 ? JSON.parse(sc.decode(msg.data)) : {};
    if (this.bug === 'ack-first') {
      msg.ack();
    }
    if (this.bug === 'dedup-first') {
      if (!(await markSeen(this.db, key))) {
        return this.finish(msg, key);
      }
    }
    if (this.bug === 'check-first') {
      const { rows } = await this.db.query('SELECT EXISTS (SELECT 1 FROM inbox WHERE key = $1) AS seen', [key]);
      if (rows[0].seen) {
        return this.finish(msg, key);
      }
    }
    const tx = await this.db.connect();
    try {
      await tx.query('BEGIN');
      let fresh = true;
      if (this.bug === 'check-first') {
        await markSeen(tx, key); // what it finds is not looked at
      } else if (this.bug !== 'dedup-first') {
        fresh = await markSeen(tx, key);
      }
      if (fresh) {
        await this.change(tx, key, agg, type, body);
      } else {
        await tx.query('ROLLBACK'); // applied before: only finish it
      }
    } catch (err) {
      tx.release(err); // closes the connection: the server rolls back
      throw err;
    }
    tx.release();
    return this.finish(msg, key);
  }

  /** change applies the command in the open transaction tx and commits. */
  async change(tx, key, agg, type, body) {
    await tx.query(
      'INSERT INTO orders (aggregate, state) VALUES ($1, $2) ON CONFLICT DO NOTHING',
      [agg, JSON.stringify(initialOrder())],
    );
    const { rows } = await tx.query('SELECT state FROM orders WHERE aggregate = $1 FOR UPDATE', [agg]);
    const order = rows[0].state; // node-postgres parses jsonb
    const events = apply(order, type, body);
    await tx.query('UPDATE orders SET state = $2 WHERE aggregate = $1', [agg, JSON.stringify(order)]);
    let insert = 'INSERT INTO outbox (id, cause, type, payload) VALUES ($1, $2, $3, $4)';
    if (this.bug === 'check-first') {
      insert += ' ON CONFLICT (id) DO NOTHING'; // "the outbox insert is idempotent"
    }
    for (const [i, ev] of events.entries()) {
      await tx.query(insert, [`${key}/${i}`, key, ev.type, JSON.stringify(ev.payload)]);
    }
    await tx.query('COMMIT');
  }

  /**
   * finish publishes the events of the message still in the outbox, with
   * their ids as Nats-Msg-Id (the stream drops a second copy), marks them
   * sent, and acks the message.
   */
  async finish(msg, key) {
    const { rows } = await this.db.query(
      'SELECT id, type, payload::text AS payload FROM outbox WHERE cause = $1 AND NOT sent ORDER BY id',
      [key],
    );
    for (const ev of rows) {
      const h = headers();
      h.set('Oncecheck-Cause', key);
      await this.js.publish(`oncecheck.out.${ev.type}`, sc.encode(ev.payload), { msgID: ev.id, headers: h });
      await this.db.query('UPDATE outbox SET sent = true WHERE id = $1', [ev.id]);
    }
    if (this.bug !== 'ack-first') {
      msg.ack();
    }
  }
}

/** markSeen inserts the key into the inbox and says whether it was new. */
async function markSeen(db, key) {
  const res = await db.query('INSERT INTO inbox (key) VALUES ($1) ON CONFLICT DO NOTHING', [key]);
  return res.rowCount === 1;
}

async function main() {
  const bug = process.env.ORDERS_BUG || '';
  if (!BUGS.includes(bug)) {
    throw new Error(`ORDERS_BUG=${JSON.stringify(bug)}: want ack-first, dedup-first or check-first`);
  }
  const name = `orders-${process.env.ONCECHECK_CONSUMER || '0'}`;
  const db = new pg.Pool({ connectionString: env('DATABASE_URL'), application_name: name });
  db.on('error', (err) => console.error(`${name}: idle database connection: ${err.message}`));
  const nc = await connect({ servers: env('NATS_URL'), name });
  const jsm = await nc.jetstreamManager();
  await jsm.consumers.add(STREAM, {
    durable_name: DURABLE,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(1000),
    max_deliver: -1,
  });
  const js = nc.jetstream();
  const consumer = await js.consumers.get(STREAM, DURABLE);
  const svc = new OrdersService(db, js, bug);

  let stopping = false;
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      stopping = true;
    });
  }
  while (!stopping && !nc.isClosed()) {
    let msg;
    try {
      msg = await consumer.next({ expires: 1000 });
    } catch (err) {
      console.error(`${name}: fetch: ${err.message}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      continue;
    }
    if (!msg) {
      continue;
    }
    try {
      await svc.handle(msg);
    } catch (err) {
      console.error(`${name}: ${err.message}`);
      msg.nak();
    }
  }
  if (!stopping) {
    throw new Error('the NATS connection closed');
  }
  await nc.drain();
  await db.end();
}

main().catch((err) => {
  console.error(`orders: ${err.stack || err}`);
  process.exit(1);
});
