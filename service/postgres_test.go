package service

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/internal/pgtest"
	"github.com/oncecheck/oncecheck/model"
)

// TestQueueOf: the queue table and its id column are read from an INSERT
// that stores $1, however it is written; anything else asks for --queue.
func TestQueueOf(t *testing.T) {
	for sql, want := range map[string]string{
		"INSERT INTO jobs (id, key, type, aggregate, payload, position) VALUES ($1,$2,$3,$4,$5,$6)": "jobs.id",
		"insert into jobs(payload, message_id) values ($5::jsonb, $1)":                              "jobs.message_id",
		`INSERT INTO "Jobs" AS j ("Key", "Id") VALUES (lower($2), $1) RETURNING seq`:                `"Jobs"."Id"`,
		"INSERT INTO jobs (args, id) VALUES (json_build_object('k', $2, 'a', ','), $1) -- $7":       "jobs.id",
	} {
		got, err := queueOf(sql)
		require.NoError(t, err, sql)
		require.Equal(t, want, got, sql)
	}
	for _, sql := range []string{
		"SELECT enqueue($1, $2)",
		"INSERT INTO jobs VALUES ($1, $2)",
		"INSERT INTO jobs (id) VALUES ($1 || '')",
		"INSERT INTO jobs (id) SELECT $1",
	} {
		_, err := queueOf(sql)
		require.ErrorContains(t, err, "--queue TABLE.COLUMN", sql)
	}
}

// TestQueueSpec: --queue names a column, or a field of a JSON column.
func TestQueueSpec(t *testing.T) {
	for spec, want := range map[string][3]string{
		"jobs.id":                       {"jobs", "id", ""},
		"river_job.args->>'id'":         {"river_job", "args", "id"},
		`"Jobs"."Args" ->> 'job''s id'`: {"Jobs", "Args", "job's id"},
		"Jobs.Args->>id":                {"jobs", "args", "id"},
	} {
		table, col, field, err := queueSpec(spec)
		require.NoError(t, err, spec)
		require.Equal(t, want, [3]string{table, col, field}, spec)
	}
	for _, spec := range []string{"jobs", "jobs.args->>", "public.jobs.id", "jobs.id desc"} {
		_, _, _, err := queueSpec(spec)
		require.Error(t, err, spec)
	}
}

// TestSendParams: a send statement gets as many parameters as the highest
// it names; the id, key, type and aggregate are text, and so are the ones
// it skips (the server need not infer a type it cannot see); the payload
// and the position it names take the type of where they stand.
func TestSendParams(t *testing.T) {
	oids, err := sendParams("INSERT INTO jobs (id, payload) VALUES ($1, $5::jsonb) -- not $6")
	require.NoError(t, err)
	require.Equal(t, []uint32{25, 25, 25, 25, 0}, oids)
	oids, err = sendParams("SELECT enqueue($1, '$2', $$ $3 $$)")
	require.NoError(t, err)
	require.Equal(t, []uint32{25}, oids)
	oids, err = sendParams("INSERT INTO jobs (id, position) VALUES ($1, $6)")
	require.NoError(t, err)
	require.Equal(t, []uint32{25, 25, 25, 25, 25, 0}, oids)
	_, err = sendParams("INSERT INTO jobs (key) VALUES ($2)")
	require.ErrorContains(t, err, "must store $1")
	_, err = sendParams("INSERT INTO jobs (id) VALUES ($1, $7)")
	require.ErrorContains(t, err, "names $7")
}

// TestOutputsTable: the outputs table, with its four columns by default or
// named.
func TestOutputsTable(t *testing.T) {
	table, cols, err := outputsTable("events")
	require.NoError(t, err)
	require.Equal(t, "events", table)
	require.Equal(t, [4]string{"id", "type", "cause", "payload"}, cols)
	table, cols, err = outputsTable(`Outbox (event_id, "Kind", causation, body)`)
	require.NoError(t, err)
	require.Equal(t, "outbox", table)
	require.Equal(t, [4]string{"event_id", "Kind", "causation", "body"}, cols)
	_, _, err = outputsTable("public.events")
	require.ErrorContains(t, err, "unqualified")
	_, _, err = outputsTable("events(id, type)")
	require.ErrorContains(t, err, "four columns")
}

// pgQueueSchema is a queue and an outputs table as a service declares
// them.
const pgQueueSchema = `
CREATE TABLE jobs (seq bigserial, id text PRIMARY KEY, key text, type text, aggregate text, payload jsonb, position bigint,
                   state text NOT NULL DEFAULT 'new', done boolean NOT NULL DEFAULT false);
CREATE TABLE events (id text PRIMARY KEY, cause text, type text, payload jsonb);`

// notices is a connection of a worker, keeping the notices it gets.
type notices struct {
	mu   sync.Mutex
	got  []pgNotice
	conn *pgconn.PgConn
}

func (n *notices) take() []pgNotice {
	n.mu.Lock()
	defer n.mu.Unlock()
	got := n.got
	n.got = nil
	return got
}

// TestPGBrokerTriggers holds the queue broker to a real PostgreSQL
// server: the send statement stores each copy with the parameters it
// names; oncecheck's triggers report, on the writing connection and
// whatever its client_min_messages, each job updated or deleted and
// whether DoneWhen holds after, and each output inserted; the queue's
// id column is found for the proxy; inputs counts the jobs not finished,
// split by whether they were delivered.
func TestPGBrokerTriggers(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	for _, done := range []string{"", "done OR state = 'failed'"} {
		cfg := Config{DSN: dsn, Schema: pgQueueSchema, Broker: "postgres", Queue: PGQueue{
			SendSQL:  "INSERT INTO jobs (id, key, type, aggregate, payload, position) VALUES ($1, $2, $3, $4, $5, $6)",
			DoneWhen: done, Outputs: "events",
		}}
		b, err := startPostgres(cfg)
		require.NoError(t, err)
		t.Cleanup(b.close)
		r := &Runner{cfg: cfg, db: b.db}
		schema, err := r.createSchema(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _, _ = b.db.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
		b.useSchema(schema)
		require.NoError(t, b.reset(ctx))
		oid, attnum := b.column()
		require.NotZero(t, oid)
		require.Equal(t, uint16(2), attnum)
		w := model.Workload{
			{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)},
			{Aggregate: "o2", Type: model.Confirm},
		}.Number()
		for _, m := range w {
			require.NoError(t, b.send(ctx, m, true))
		}
		var payload, position string
		require.NoError(t, b.db.QueryRow(ctx, "SELECT payload::text, position::text FROM "+schema+".jobs WHERE id = 'm1'").Scan(&payload, &position))
		require.JSONEq(t, `{"qty":1,"sku":"a"}`, payload)
		require.Equal(t, "1", position)
		in, err := b.inputs(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, in.pending)
		b.delivered("m1")

		n := &notices{}
		pc, err := pgconn.ParseConfig(dsn)
		require.NoError(t, err)
		pc.RuntimeParams["search_path"] = schema
		pc.RuntimeParams["client_min_messages"] = "error"
		pc.OnNotice = func(_ *pgconn.PgConn, x *pgconn.Notice) {
			nt, ok := parseNotice(x.Message)
			require.True(t, ok, x.Message)
			n.mu.Lock()
			n.got = append(n.got, nt)
			n.mu.Unlock()
		}
		n.conn, err = pgconn.ConnectConfig(ctx, pc)
		require.NoError(t, err)
		t.Cleanup(func() { _ = n.conn.Close(context.Background()) })
		exec := func(sql string) {
			t.Helper()
			_, err := n.conn.Exec(ctx, sql).ReadAll()
			require.NoError(t, err, sql)
		}
		exec("UPDATE jobs SET state = 'running' WHERE id = 'm1'")
		require.Equal(t, []pgNotice{{Kind: "queue", ID: "m1", Done: false}}, n.take())
		exec("UPDATE jobs SET done = true WHERE id = 'm1'")
		require.Equal(t, []pgNotice{{Kind: "queue", ID: "m1", Done: done != ""}}, n.take())
		exec("UPDATE jobs SET state = 'failed' WHERE id = 'm2'")
		require.Equal(t, []pgNotice{{Kind: "queue", ID: "m2", Done: done != ""}}, n.take())
		in, err = b.inputs(ctx)
		require.NoError(t, err)
		if done == "" {
			require.Equal(t, inputs{consumers: 1, pending: 1, ackPending: 1, ackWait: b.lease()}, in)
		} else {
			require.Equal(t, inputs{consumers: 1, ackWait: b.lease()}, in)
		}
		exec("DELETE FROM jobs")
		require.ElementsMatch(t, []pgNotice{{Kind: "queue", ID: "m1", Done: true}, {Kind: "queue", ID: "m2", Done: true}}, n.take())
		exec(`INSERT INTO events VALUES ('k1/0', 'k1', 'ItemAdded', '{"sku":"a","qty":1}')`)
		got := n.take()
		require.Len(t, got, 1)
		require.Equal(t, "k1/0", got[0].ID)
		require.Equal(t, "k1", got[0].Cause)
		require.Equal(t, "ItemAdded", got[0].Type)
		require.JSONEq(t, `{"sku":"a","qty":1}`, string(got[0].payloadBytes()))
		in, err = b.inputs(ctx)
		require.NoError(t, err)
		require.Zero(t, in.pending+in.ackPending)
	}
}

// TestPGBrokerRefuses: what the queue broker cannot work with is said
// before any run.
func TestPGBrokerRefuses(t *testing.T) {
	base := Config{Command: "true", ObserveSQL: "SELECT 1", DSN: "postgres://127.0.0.1:1/x", Broker: "postgres", Schema: pgQueueSchema,
		Queue: PGQueue{SendSQL: "INSERT INTO jobs (id) VALUES ($1)", Outputs: "events"}}
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.Queue.SendSQL = "" }, "needs the statement that sends a job"},
		{func(c *Config) { c.Queue.Outputs = "" }, "needs the table the service writes its events to"},
		{func(c *Config) { c.Schema = "" }, "needs --schema"},
		{func(c *Config) { c.BrokerURL = "postgres://elsewhere" }, "no broker URL"},
		{func(c *Config) { c.Queue.SendSQL = "SELECT enqueue($1)" }, "--queue TABLE.COLUMN"},
		{func(c *Config) { c.Queue.Queue = "public.jobs.id" }, "TABLE.COLUMN"},
	} {
		cfg := base
		tc.change(&cfg)
		require.NoError(t, cfg.defaults())
		_, err := startPostgres(cfg)
		require.ErrorContains(t, err, tc.want)
	}
	cfg := base
	cfg.Broker = "nats"
	require.ErrorContains(t, cfg.defaults(), "the postgres broker's")
}

// TestPGNoticeRoundTrip: a notice the triggers send is read back, and
// another is not taken for one.
func TestPGNoticeRoundTrip(t *testing.T) {
	body, err := json.Marshal(map[string]any{"id": "k1/0", "type": "T", "cause": "k1", "payload": "{\"a\":1}"})
	require.NoError(t, err)
	n, ok := parseNotice(pgNoticePrefix + "output:" + string(body))
	require.True(t, ok)
	require.JSONEq(t, `{"a":1}`, string(n.payloadBytes()))
	for _, msg := range []string{"relation \"x\" already exists, skipping", pgNoticePrefix + "other:{}", pgNoticePrefix + "queue:not json"} {
		_, ok := parseNotice(msg)
		require.False(t, ok, msg)
	}
}

// TestPGBrokerJSONField: a job library's queue keeps the copy's id in a
// field of a JSON column: the triggers, the drain and the proxy read it
// there, from the text and the binary form of json and jsonb alike.
func TestPGBrokerJSONField(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	cfg := Config{DSN: dsn, Broker: "postgres", Schema: `
CREATE TABLE river_job (id bigserial PRIMARY KEY, args jsonb NOT NULL, args_json json, kind text NOT NULL, state text NOT NULL DEFAULT 'available');
CREATE TABLE events (id text PRIMARY KEY, cause text, type text, payload jsonb);`,
		Queue: PGQueue{
			SendSQL:  `INSERT INTO river_job (args, args_json, kind) VALUES (json_build_object('id', $1, 'key', $2, 'payload', $5::jsonb), json_build_object('id', $1), 'orders')`,
			Queue:    `river_job.args->>'id'`,
			DoneWhen: "state = 'completed'", Outputs: "events",
		}}
	_, err := startPostgres(Config{DSN: dsn, Broker: "postgres", Schema: cfg.Schema, Queue: PGQueue{SendSQL: cfg.Queue.SendSQL, Outputs: "events"}})
	require.ErrorContains(t, err, "--queue TABLE.COLUMN", "the id is not a column: --queue is needed")
	b, err := startPostgres(cfg)
	require.NoError(t, err)
	t.Cleanup(b.close)
	require.Equal(t, "id", b.field)
	r := &Runner{cfg: cfg, db: b.db}
	schema, err := r.createSchema(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = b.db.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	b.useSchema(schema)
	require.NoError(t, b.reset(ctx))
	_, attnum := b.column()
	require.Equal(t, uint16(2), attnum)
	for _, m := range one() {
		require.NoError(t, b.send(ctx, m, false))
	}
	in, err := b.inputs(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, in.pending)

	conn, err := pgconn.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	for _, column := range []string{"args", "args_json"} {
		for _, format := range []int16{0, 1} {
			res := conn.ExecParams(ctx, "SELECT "+column+" FROM "+schema+".river_job", nil, nil, nil, []int16{format}).Read()
			require.NoError(t, res.Err)
			require.Len(t, res.Rows, 1)
			id, ok := b.idValue(res.Rows[0][0])
			require.True(t, ok, "%s, format %d: %q", column, format, res.Rows[0][0])
			require.Equal(t, "m1", id)
		}
	}
	var got []pgNotice
	pc, err := pgconn.ParseConfig(dsn)
	require.NoError(t, err)
	pc.RuntimeParams["search_path"] = schema
	pc.OnNotice = func(_ *pgconn.PgConn, x *pgconn.Notice) {
		nt, ok := parseNotice(x.Message)
		require.True(t, ok, x.Message)
		got = append(got, nt)
	}
	worker, err := pgconn.ConnectConfig(ctx, pc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = worker.Close(context.Background()) })
	_, err = worker.Exec(ctx, "UPDATE river_job SET state = 'running'; UPDATE river_job SET state = 'completed'").ReadAll()
	require.NoError(t, err)
	require.Equal(t, []pgNotice{{Kind: "queue", ID: "m1"}, {Kind: "queue", ID: "m1", Done: true}}, got)
	in, err = b.inputs(ctx)
	require.NoError(t, err)
	require.Zero(t, in.pending+in.ackPending)
}

// one is a workload of one message.
func one() model.Workload {
	return model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number()
}

// TestPGBrokerReleaseAndSearchPath: the drain's reading of the queue runs
// DoneWhen in the run's schema (it may name the schema's tables
// unqualified, as the service's statements do); the release statement
// counts only the jobs it gave back, skips a job taken again since, and
// its error is returned, not swallowed.
func TestPGBrokerReleaseAndSearchPath(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	cfg := Config{DSN: dsn, Broker: "postgres", Schema: pgQueueSchema + `
CREATE TABLE finished (id text PRIMARY KEY);`, Queue: PGQueue{
		SendSQL:    "INSERT INTO jobs (id, key, type, aggregate) VALUES ($1, $2, $3, $4)",
		DoneWhen:   "EXISTS (SELECT 1 FROM finished f WHERE f.id = jobs.id)",
		Outputs:    "events",
		ReleaseSQL: "UPDATE jobs SET state = 'new' WHERE id = $1 AND state = 'running'",
	}}
	b, err := startPostgres(cfg)
	require.NoError(t, err)
	t.Cleanup(b.close)
	r := &Runner{cfg: cfg, db: b.db}
	schema, err := r.createSchema(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = b.db.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	b.useSchema(schema)
	require.NoError(t, b.reset(ctx))
	w := model.Workload{
		{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)},
		{Aggregate: "o2", Type: model.Confirm},
	}.Number()
	for _, m := range w {
		require.NoError(t, b.send(ctx, m, false))
	}
	exec := func(sql string) {
		t.Helper()
		_, err := b.db.Exec(ctx, strings.ReplaceAll(sql, "$s", schema))
		require.NoError(t, err, sql)
	}
	b.delivered("m1")
	exec("INSERT INTO $s.finished VALUES ('m2')")
	in, err := b.inputs(ctx)
	require.NoError(t, err)
	require.Equal(t, inputs{consumers: 1, ackPending: 1, ackWait: b.lease()}, in)

	b.delivered("m2")
	b.delivered("m2")
	exec("UPDATE $s.jobs SET state = 'running'")
	n, err := b.release([]string{"m1#1", "m2#1"})
	require.NoError(t, err)
	require.Equal(t, 1, n, "m2 was taken again since its first delivery")
	n, err = b.release([]string{"m1#1"})
	require.NoError(t, err)
	require.Zero(t, n, "m1 was given back already: the statement changed nothing")
	require.False(t, b.requeue([]string{"m1#1"}))

	b.q.ReleaseSQL = "UPDATE jobs SET no_such_column = 1 WHERE id = $1"
	_, err = b.release([]string{"m1#1"})
	require.ErrorContains(t, err, "no_such_column")
	require.False(t, b.requeue([]string{"m1#1"}))
}

// TestGivenBack: the requeue event says how many copies went back.
func TestGivenBack(t *testing.T) {
	require.Equal(t, "oncecheck gave the unacknowledged copy of the killed consumer-1 back to the broker, as the broker would after their ack wait", givenBack(1, 1, "consumer-1"))
	require.Equal(t, "oncecheck gave the 2 unacknowledged copies of the killed consumer-1 back to the broker, as the broker would after their ack wait", givenBack(2, 2, "consumer-1"))
	require.Equal(t, "oncecheck gave 1 of the 2 unacknowledged copies of the killed consumer-1 back to the broker, as the broker would after their ack wait; not the others: taken again since, or the release statement changed nothing", givenBack(1, 2, "consumer-1"))
}

// TestPGQueueFinishInAFunction: a worker that finishes its job inside an
// SQL function (SELECT finish_job($1)), in a transaction of its own, has its begin, its commit, the job's ack and the function's output
// recorded, all of the attempt: the function's writes reach the proxy as
// the triggers' notices only.
func TestPGQueueFinishInAFunction(t *testing.T) {
	h := fnWorkerRun(t, "")
	kinds := map[histories.Kind]int{}
	for _, ev := range h.Events {
		if ev.Attempt == 1 {
			kinds[ev.Kind]++
		}
	}
	// The take: a write that commits by itself; the finish: a begin and a
	// commit.
	want := map[histories.Kind]int{histories.Deliver: 1, histories.Write: 1, histories.Begin: 1, histories.Commit: 2, histories.Ack: 1, histories.Done: 1, histories.Publish: 1}
	require.Equal(t, want, kinds, "%s", h.Timeline())
}

// TestPGQueueImplicitTransactionRollsBack: statements outside a
// transaction sent in one simple query are one implicit transaction: a
// job one of them finished is not acked when a later one fails (the
// server rolls the finish back); the worker's later finish is the ack.
func TestPGQueueImplicitTransactionRollsBack(t *testing.T) {
	h := fnWorkerRun(t, "FNWORKER_BATCH=1")
	acks, refused := 0, 0
	for _, ev := range h.Events {
		switch ev.Kind {
		case histories.Ack:
			acks++
			require.Contains(t, ev.Detail, "tx", "the ack is the function's transaction's\n%s", h.Timeline())
		case histories.Refused:
			refused++
		}
	}
	require.Equal(t, 1, acks, "%s", h.Timeline())
	require.Zero(t, refused, "%s", h.Timeline())
}

// fnWorkerRun runs testdata/fnworker on one job, env in its environment,
// and returns the history.
func fnWorkerRun(t *testing.T, env string) *histories.History {
	t.Helper()
	dsn := pgtest.DSN(t)
	bin := filepath.Join(t.TempDir(), "fnworker")
	out, err := exec.Command("go", "build", "-o", bin, "./testdata/fnworker").CombinedOutput()
	require.NoError(t, err, "%s", out)
	r, err := New(Config{
		Command: env + " exec " + bin, Consumers: 1, DSN: dsn, Broker: "postgres", Model: model.Orders{},
		ObserveSQL: "SELECT 'o1', '{}'::jsonb WHERE false",
		Schema: pgQueueSchema + `
CREATE FUNCTION finish_job(job text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE k text;
BEGIN
  DELETE FROM jobs WHERE id = job RETURNING key INTO k;
  INSERT INTO events VALUES (k || '/0', k, 'ItemAdded', '{"qty":1,"sku":"a"}');
END $$;`,
		Queue: PGQueue{SendSQL: "INSERT INTO jobs (id, key, type, aggregate) VALUES ($1, $2, $3, $4)", Outputs: "events"},
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	h, _, err := r.Run(context.Background(), Case{Workload: one(), Plan: faults.Plan{Consumers: 1}}, 0)
	require.NoError(t, err)
	return h
}
