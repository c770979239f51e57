package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

// PGQueue is the contract of a service that consumes a PostgreSQL table
// used as a queue (Config.Broker "postgres"; docs/service-mode-postgres.md):
// how oncecheck sends a job, which table and column hold it, when a job is
// finished, and where the service writes its events.
type PGQueue struct {
	// SendSQL sends one workload copy: oncecheck runs it in the run's
	// schema, once per copy, with the parameters $1 the copy's id, $2 its
	// idempotence key, $3 its type, $4 its aggregate, $5 its payload (JSON
	// text) and $6 its position (NULL for a model without order). It may
	// use any of them, in any order, each as often as it likes. $1 to $4
	// are text; $5 and $6 take the type of where they stand (a jsonb or
	// bigint column; inside a function taking any type, a cast: $5::jsonb).
	SendSQL string
	// Queue is the queue table and its column holding the copy's id, as
	// TABLE.COLUMN, or TABLE.COLUMN->>'FIELD' for a field of a JSON
	// column (a job library's arguments); "" derives TABLE.COLUMN from
	// SendSQL when it reads INSERT INTO table (columns) VALUES (values)
	// with $1 among the values.
	Queue string
	// DoneWhen is an SQL condition on the queue table's columns that holds
	// once a job is finished ("done", "state = 'completed'"); "" means a
	// job is finished when its row is deleted.
	DoneWhen string
	// Outputs is the table the service inserts its events into: "events",
	// whose columns id, type, cause and payload are read, or
	// "events(event_id, kind, causation, body)" naming those four columns,
	// in that order.
	Outputs string
	// Lease is how long a worker may hold a job before another may take it
	// (its visibility timeout), given to the service as QUEUE_LEASE_MS; 0
	// means 1s. A pause fault stops a process for longer than this.
	Lease time.Duration
	// ReleaseSQL, when set, gives a job back as its lease running out
	// would: oncecheck runs it with $1 the job's id for each job a process
	// it killed held unfinished, once the process is gone ("UPDATE jobs
	// SET locked_until = NULL WHERE id = $1 AND NOT done"), so that runs
	// do not sit the lease out. Without it, the lease runs out by itself.
	ReleaseSQL string
}

// PostgresKinds are the fault kinds service mode injects on a PostgreSQL
// queue: no publish-failure (an output is a row of the job's transaction,
// whose failure is the transaction's: crashes and cut connections cover
// it), no broker-restart (the server is not oncecheck's), and of
// redelivery only the lease-expired pause (a commit cannot be lost while
// the server keeps it).
var PostgresKinds = []faults.Kind{faults.Crash, faults.Redelivery, faults.Reorder, faults.Reissue, faults.Concurrent, faults.CutConnection}

// pgNoticePrefix starts the notices of oncecheck's triggers, which the
// PostgreSQL proxy reads and keeps from the service.
const pgNoticePrefix = "oncecheck:"

// The names of oncecheck's trigger functions and triggers in a run's
// schema.
const (
	pgQueueTrigger  = "oncecheck_queue_row"
	pgOutputTrigger = "oncecheck_output_row"
)

// pgBroker is a queue table in each run's PostgreSQL schema: oncecheck
// sends by the service's statement, follows deliveries, acks and outputs
// at the PostgreSQL proxies (pgqueue.go), and reads how far the consumers
// are from the table.
type pgBroker struct {
	q          PGQueue
	table, col string    // the queue table and its id column (names as stored)
	field      string    // the id's field in that column, when it holds JSON ("" when it holds the id)
	out        string    // the outputs table
	outCols    [4]string // its id, type, cause and payload columns
	params     []uint32  // the types of SendSQL's parameters (0: the server infers)
	db         *pgxpool.Pool

	mu     sync.Mutex
	schema string
	oid    uint32 // of the queue table in the run's schema
	attnum uint16 // of its id column
	sent   []string
	counts map[string]int // deliveries of each copy seen by the proxies
}

// startPostgres checks the queue contract of cfg (its errors are
// ConfigErrors) and connects to its PostgreSQL server.
func startPostgres(cfg Config) (*pgBroker, error) {
	b, err := checkQueue(cfg)
	if err != nil {
		return nil, configErr(err)
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("service: the PostgreSQL DSN: %w", err)
	}
	pc.MaxConns = 2
	if b.db, err = pgxpool.NewWithConfig(context.Background(), pc); err != nil {
		return nil, fmt.Errorf("service: PostgreSQL: %w", err)
	}
	return b, nil
}

// checkQueue checks the queue contract of cfg and reads its tables and
// columns.
func checkQueue(cfg Config) (*pgBroker, error) {
	q := cfg.Queue
	if cfg.BrokerURL != "" {
		return nil, fmt.Errorf("service: the postgres queue lives in each run's schema on the PostgreSQL server of the DSN: no broker URL (%q)", cfg.BrokerURL)
	}
	if strings.TrimSpace(q.SendSQL) == "" {
		return nil, errors.New("service: the postgres queue needs the statement that sends a job (--send-sql, Config.Queue.SendSQL)")
	}
	if q.ReleaseSQL != "" {
		if oids, err := sendParams(q.ReleaseSQL); err != nil || len(oids) != 1 {
			return nil, fmt.Errorf("service: the postgres queue's release statement (--release-sql) takes one parameter, $1, the job's id: %q", q.ReleaseSQL)
		}
	}
	if strings.TrimSpace(q.Outputs) == "" {
		return nil, errors.New("service: the postgres queue needs the table the service writes its events to (--outputs-table, Config.Queue.Outputs)")
	}
	if cfg.Schema == "" {
		return nil, errors.New("service: the postgres queue needs --schema (Config.Schema): the queue and outputs tables must exist before the service starts")
	}
	b := &pgBroker{q: q}
	var err error
	if b.params, err = sendParams(q.SendSQL); err != nil {
		return nil, err
	}
	spec := q.Queue
	if spec == "" {
		if spec, err = queueOf(q.SendSQL); err != nil {
			return nil, err
		}
	}
	if b.table, b.col, b.field, err = queueSpec(spec); err != nil {
		return nil, fmt.Errorf("service: the queue %q (want TABLE.COLUMN or TABLE.COLUMN->>'FIELD'): %w", spec, err)
	}
	if b.out, b.outCols, err = outputsTable(q.Outputs); err != nil {
		return nil, fmt.Errorf("service: the outputs table %q: %w", q.Outputs, err)
	}
	return b, nil
}

// lease is the lease the service is given.
func (b *pgBroker) lease() time.Duration {
	if b.q.Lease > 0 {
		return b.q.Lease
	}
	return time.Second
}

// useSchema names the schema of the next run (schemaUser).
func (b *pgBroker) useSchema(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.schema = name
}

// schemaUser is a broker that lives in the run's schema.
type schemaUser interface{ useSchema(name string) }

// ident quotes a name of the run's schema.
func (b *pgBroker) ident(name string) string { return pgx.Identifier{b.schema, name}.Sanitize() }

// reset installs oncecheck's triggers on the queue and outputs tables of
// the run's schema (applied from the schema file) and finds the queue's
// id column, whose values in a result are deliveries.
func (b *pgBroker) reset(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent, b.counts, b.oid, b.attnum = nil, map[string]int{}, 0, 0
	if b.schema == "" {
		return errors.New("service: the postgres queue has no schema")
	}
	var oid uint32
	var attnum int16
	err := b.db.QueryRow(ctx, `SELECT c.oid, a.attnum FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3`, b.schema, b.table, b.col).Scan(&oid, &attnum)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("service: the schema file has no queue table %s with a column %s", pgx.Identifier{b.table}.Sanitize(), pgx.Identifier{b.col}.Sanitize())
	}
	if err != nil {
		return fmt.Errorf("service: find the queue table: %w", err)
	}
	b.oid, b.attnum = oid, uint16(attnum)
	if _, err := b.db.Exec(ctx, b.triggersSQL()); err != nil {
		return fmt.Errorf("service: install oncecheck's triggers on %s and %s: %w", b.table, b.out, err)
	}
	return nil
}

// triggersSQL declares the triggers that tell the proxy, on the writing
// connection, what a statement did to a job or an output: a notice per
// row, which the proxy reads and does not forward. Each runs with
// client_min_messages at notice whatever the session's, and with the run's
// schema as its search path.
func (b *pgBroker) triggersSQL() string {
	s := pgx.Identifier{b.schema}.Sanitize()
	oldID, newID := b.idOf("OLD"), b.idOf("NEW")
	done := "false"
	if b.q.DoneWhen != "" {
		done = fmt.Sprintf("(SELECT COALESCE((%s), false) FROM (SELECT NEW.*) AS %s)", b.q.DoneWhen, pgx.Identifier{b.table}.Sanitize())
	}
	var o [4]string
	for i, c := range b.outCols {
		o[i] = "NEW." + pgx.Identifier{c}.Sanitize()
	}
	return fmt.Sprintf(`
CREATE FUNCTION %[1]s.%[2]s() RETURNS trigger LANGUAGE plpgsql
SET client_min_messages = notice SET search_path = %[1]s AS $oncecheck$
#variable_conflict use_column
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE NOTICE '%[3]squeue:%%', json_build_object('id', %[4]s, 'done', true);
  ELSE
    RAISE NOTICE '%[3]squeue:%%', json_build_object('id', %[13]s, 'done', %[5]s);
  END IF;
  RETURN NULL;
END $oncecheck$;
CREATE TRIGGER %[2]s AFTER UPDATE OR DELETE ON %[6]s FOR EACH ROW EXECUTE FUNCTION %[1]s.%[2]s();
CREATE FUNCTION %[1]s.%[7]s() RETURNS trigger LANGUAGE plpgsql
SET client_min_messages = notice SET search_path = %[1]s AS $oncecheck$
BEGIN
  RAISE NOTICE '%[3]soutput:%%', json_build_object('id', %[9]s::text, 'type', %[10]s::text, 'cause', %[11]s::text, 'payload', %[12]s);
  RETURN NULL;
END $oncecheck$;
CREATE TRIGGER %[7]s AFTER INSERT ON %[8]s FOR EACH ROW EXECUTE FUNCTION %[1]s.%[7]s();`,
		s, pgQueueTrigger, pgNoticePrefix, oldID, done, b.ident(b.table), pgOutputTrigger, b.ident(b.out), o[0], o[1], o[2], o[3], newID)
}

// idOf is the SQL of the id of the queue's row named row (NEW, OLD, or
// the table), as text.
func (b *pgBroker) idOf(row string) string {
	col := row + "." + pgx.Identifier{b.col}.Sanitize()
	if b.field == "" {
		return col + "::text"
	}
	return fmt.Sprintf("(%s::jsonb ->> %s)", col, quoteLiteral(b.field))
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// idValue reads a copy's id from a value of the queue's id column in a
// result row, text or binary: the value itself, or its field of a JSON
// object (jsonb's binary form starts with its version byte, 1).
func (b *pgBroker) idValue(v []byte) (string, bool) {
	if b.field == "" {
		return string(v), true
	}
	if len(v) > 0 && v[0] == 1 {
		v = v[1:]
	}
	var obj map[string]any
	if json.Unmarshal(v, &obj) != nil {
		return "", false
	}
	id, ok := obj[b.field].(string)
	return id, ok
}

// conn acquires one of oncecheck's connections with the run's schema as
// its search path, as the service's own connections have it: the send,
// release and DoneWhen statements name its tables and functions
// unqualified. Release it.
func (b *pgBroker) conn(ctx context.Context) (*pgxpool.Conn, error) {
	b.mu.Lock()
	schema := b.schema
	b.mu.Unlock()
	conn, err := b.db.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres queue: connect: %w", err)
	}
	if _, err := conn.Exec(ctx, "SET search_path TO "+pgx.Identifier{schema}.Sanitize()); err != nil {
		conn.Release()
		return nil, fmt.Errorf("postgres queue: schema %s: %w", schema, err)
	}
	return conn, nil
}

// send runs the service's statement for one copy in the run's schema.
func (b *pgBroker) send(ctx context.Context, m model.Message, ordered bool) error {
	b.mu.Lock()
	b.sent = append(b.sent, m.ID)
	b.mu.Unlock()
	conn, err := b.conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	pc := conn.Conn().PgConn()
	all := [][]byte{[]byte(m.ID), []byte(m.Key), []byte(m.Type), []byte(m.Aggregate), []byte(m.Payload), nil}
	if len(m.Payload) == 0 {
		all[4] = []byte("null")
	}
	if ordered {
		all[5] = []byte(strconv.FormatInt(m.Position, 10))
	}
	n := len(b.params)
	if res := pc.ExecParams(ctx, b.q.SendSQL, all[:n], b.params, nil, nil).Read(); res.Err != nil {
		return fmt.Errorf("postgres queue: the send statement for %s: %w", m.ID, res.Err)
	}
	return nil
}

// inputs reads the queue: the copies sent whose jobs are not finished,
// split into those a proxy saw delivered and the others.
func (b *pgBroker) inputs(ctx context.Context) (inputs, error) {
	b.mu.Lock()
	ids := append([]string(nil), b.sent...)
	delivered := make(map[string]bool, len(b.counts))
	for id, n := range b.counts {
		delivered[id] = n > 0
	}
	id := b.idOf(pgx.Identifier{b.table}.Sanitize())
	q := fmt.Sprintf("SELECT %[1]s FROM %[2]s AS %[3]s WHERE %[1]s = ANY($1)", id, b.ident(b.table), pgx.Identifier{b.table}.Sanitize())
	if b.q.DoneWhen != "" {
		q += " AND NOT COALESCE((" + b.q.DoneWhen + "), false)"
	}
	b.mu.Unlock()
	res := inputs{consumers: 1, ackWait: b.lease()}
	conn, err := b.conn(ctx)
	if err != nil {
		return res, err
	}
	defer conn.Release()
	rows, err := conn.Query(ctx, q, ids)
	if err != nil {
		return res, fmt.Errorf("postgres queue: read the queue: %w", err)
	}
	open, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return res, fmt.Errorf("postgres queue: read the queue: %w", err)
	}
	for _, id := range open {
		if delivered[id] {
			res.ackPending++
		} else {
			res.pending++
		}
	}
	return res, nil
}

// requeue implements broker: true when release gave a job back.
func (b *pgBroker) requeue(tokens []string) bool {
	n, err := b.release(tokens)
	return err == nil && n > 0
}

// release gives the jobs of the tokens back with ReleaseSQL, as their
// leases running out would, unless a job was delivered again since (its
// lease is the new holder's), and returns how many it gave back: those
// whose statement changed (or returned) a row. Without ReleaseSQL there
// is nothing to do: the server releases the row locks of a killed
// process's transactions as its connection drops, and a lease the service
// committed runs out by itself. An error of the statement is returned:
// a release that cannot run would make every run wait the lease out.
func (b *pgBroker) release(tokens []string) (int, error) {
	if b.q.ReleaseSQL == "" {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := b.conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	pc := conn.Conn().PgConn()
	released := 0
	for _, t := range tokens {
		id, n, _ := strings.Cut(t, "#")
		b.mu.Lock()
		later := strconv.Itoa(b.counts[id]) != n
		b.mu.Unlock()
		if later {
			continue // taken again since: the lease is another's now
		}
		res := pc.ExecParams(ctx, b.q.ReleaseSQL, [][]byte{[]byte(id)}, []uint32{0}, nil, nil).Read()
		if res.Err != nil {
			return released, fmt.Errorf("postgres queue: the release statement (--release-sql, Config.Queue.ReleaseSQL) for job %s: %w", id, res.Err)
		}
		if res.CommandTag.RowsAffected() > 0 {
			released++
		}
	}
	return released, nil
}

// delivered counts a delivery of copy id and returns its number.
func (b *pgBroker) delivered(id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.counts[id]++
	return b.counts[id]
}

// column returns the queue table's oid and its id column's number.
func (b *pgBroker) column() (uint32, uint16) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.oid, b.attnum
}

// proxy gives the process its lease: the queue itself is reached through
// the PostgreSQL proxy, which every process has.
func (b *pgBroker) proxy(int, func() int, hooks) (brokerProxy, error) {
	return pgQueueEnv{"QUEUE_LEASE_MS=" + strconv.FormatInt(b.lease().Milliseconds(), 10)}, nil
}

func (b *pgBroker) input() string { return "the queue table " + b.table }

func (b *pgBroker) close() { b.db.Close() }

// pgQueueEnv is the broker proxy of a PostgreSQL queue: only an
// environment, nothing in flight of its own.
type pgQueueEnv []string

func (e pgQueueEnv) env() []string { return e }
func (pgQueueEnv) idle() bool      { return true }
func (pgQueueEnv) close()          {}

// pgNotice is what one of oncecheck's triggers reports of a row.
type pgNotice struct {
	Kind string // "queue" or "output"
	// A queue row: its job's id, and whether the job is finished after
	// the write (deleted, or DoneWhen holds).
	ID   string `json:"id"`
	Done bool   `json:"done"`
	// An output row.
	Type    string          `json:"type"`
	Cause   string          `json:"cause"`
	Payload json.RawMessage `json:"payload"`
}

// parseNotice reads a trigger's notice ("oncecheck:queue:{...}").
func parseNotice(msg string) (pgNotice, bool) {
	rest, ok := strings.CutPrefix(msg, pgNoticePrefix)
	if !ok {
		return pgNotice{}, false
	}
	kind, body, ok := strings.Cut(rest, ":")
	if !ok || (kind != "queue" && kind != "output") {
		return pgNotice{}, false
	}
	var n pgNotice
	if json.Unmarshal([]byte(body), &n) != nil {
		return pgNotice{}, false
	}
	n.Kind = kind
	return n, true
}

// payloadBytes is an output's payload as JSON: a json or jsonb column as
// is, a text column's content.
func (n pgNotice) payloadBytes() []byte {
	var s string
	if json.Unmarshal(n.Payload, &s) == nil {
		return []byte(s)
	}
	return n.Payload
}

// sendParams reads which of the six parameters SendSQL uses: it is given
// as many as the highest it names. The id, key, type and aggregate are
// text; the payload and the position, when named, take the type of where
// they stand (a jsonb column, a bigint one), and are text when skipped.
func sendParams(sql string) ([]uint32, error) {
	used := map[int]bool{}
	high := 0
	for _, tok := range sqlTokens(sql) {
		if len(tok) < 2 || tok[0] != '$' {
			continue
		}
		n, err := strconv.Atoi(tok[1:])
		if err != nil {
			continue
		}
		if n < 1 || n > 6 {
			return nil, fmt.Errorf("service: --send-sql names $%d: its parameters are $1 (id), $2 (key), $3 (type), $4 (aggregate), $5 (payload) and $6 (position)", n)
		}
		used[n] = true
		high = max(high, n)
	}
	if !used[1] {
		return nil, errors.New("service: --send-sql must store $1, the copy's id: the proxy knows a delivery by it")
	}
	oids := make([]uint32, high)
	for i := range oids {
		if i < 4 || !used[i+1] {
			oids[i] = 25 // text
		}
	}
	return oids, nil
}

// queueOf derives TABLE.COLUMN from INSERT INTO table (columns) VALUES
// (values): the column whose value is $1.
func queueOf(sql string) (string, error) {
	fail := fmt.Errorf("service: cannot tell the queue table and its id column from --send-sql %q: name them with --queue TABLE.COLUMN (Config.Queue.Queue)", shortSQL(sql))
	toks := sqlTokens(sql)
	at := 0
	next := func() string {
		if at >= len(toks) {
			return ""
		}
		at++
		return toks[at-1]
	}
	if !strings.EqualFold(next(), "INSERT") || !strings.EqualFold(next(), "INTO") {
		return "", fail
	}
	table := next()
	if table == "" || table == "(" {
		return "", fail
	}
	if t := next(); strings.EqualFold(t, "AS") {
		next()
		if next() != "(" {
			return "", fail
		}
	} else if t != "(" {
		return "", fail
	}
	var cols []string
	for {
		c := next()
		if c == "" {
			return "", fail
		}
		cols = append(cols, c)
		if t := next(); t == ")" {
			break
		} else if t != "," {
			return "", fail
		}
	}
	if !strings.EqualFold(next(), "VALUES") || next() != "(" {
		return "", fail
	}
	// The values: split at the commas of depth 0.
	depth, value, index := 0, []string{}, 0
	for {
		t := next()
		switch {
		case t == "":
			return "", fail
		case t == "(":
			depth++
		case t == ")" && depth == 0, t == "," && depth == 0:
			if len(value) == 1 && value[0] == "$1" && index < len(cols) {
				return table + "." + cols[index], nil
			}
			if t == ")" {
				return "", fail
			}
			value, index = value[:0], index+1
			continue
		case t == ")":
			depth--
		}
		value = append(value, t)
	}
}

// sqlTokens splits SQL into words, quoted identifiers (kept quoted),
// parameters and single punctuation, dropping string literals, comments
// and dollar-quoted bodies: enough to read an INSERT's shape and the
// parameters a statement names.
func sqlTokens(sql string) []string {
	var toks []string
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end := strings.Index(sql[i+2:], "*/")
			if end < 0 {
				return toks
			}
			i += end + 4
		case c == '\'':
			j := i + 1
			for j < len(sql) {
				if sql[j] == '\'' {
					if j+1 < len(sql) && sql[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			toks = append(toks, "''")
			i = j + 1
		case c == '"':
			j := i + 1
			for j < len(sql) {
				if sql[j] == '"' {
					if j+1 < len(sql) && sql[j+1] == '"' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			toks = append(toks, sql[i:min(j+1, len(sql))])
			i = j + 1
		case c == '$' && i+1 < len(sql) && sql[i+1] >= '0' && sql[i+1] <= '9':
			j := i + 1
			for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
				j++
			}
			toks = append(toks, sql[i:j])
			i = j
		case c == '$':
			// A dollar-quoted string: $tag$ ... $tag$.
			j := strings.IndexByte(sql[i+1:], '$')
			if j < 0 {
				toks = append(toks, "$")
				i++
				continue
			}
			tag := sql[i : i+j+2]
			end := strings.Index(sql[i+len(tag):], tag)
			if end < 0 {
				return toks
			}
			toks = append(toks, "''")
			i += len(tag) + end + len(tag)
		case isWordByte(c):
			j := i
			for j < len(sql) && (isWordByte(sql[j]) || sql[j] == '.' || sql[j] == '"') {
				if sql[j] == '"' { // a quoted part of a qualified name
					k := strings.IndexByte(sql[j+1:], '"')
					if k < 0 {
						break
					}
					j += k + 2
					continue
				}
				j++
			}
			toks = append(toks, sql[i:j])
			i = j
		default:
			toks = append(toks, sql[i:i+1])
			i++
		}
	}
	return toks
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// identName is the name PostgreSQL stores for an identifier as written:
// a quoted one as is, another in lower case.
func identName(s string) (string, error) {
	if strings.HasPrefix(s, `"`) {
		if len(s) < 2 || !strings.HasSuffix(s, `"`) {
			return "", fmt.Errorf("unterminated quoted name %s", s)
		}
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`), nil
	}
	if s == "" {
		return "", errors.New("an empty name")
	}
	for i := 0; i < len(s); i++ {
		if !isWordByte(s[i]) {
			return "", fmt.Errorf("%q is not a name (quote it)", s)
		}
	}
	return strings.ToLower(s), nil
}

// splitName splits a possibly quoted, dotted name into its parts.
func splitName(s string) []string {
	var parts []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case '.':
			if !quoted {
				parts = append(parts, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	return append(parts, strings.TrimSpace(s[start:]))
}

// queueSpec reads TABLE.COLUMN or TABLE.COLUMN->>'FIELD'.
func queueSpec(spec string) (table, col, field string, err error) {
	tc, f, json := strings.Cut(spec, "->>")
	if json {
		field = strings.TrimSpace(f)
		if len(field) >= 2 && field[0] == '\'' && field[len(field)-1] == '\'' {
			field = strings.ReplaceAll(field[1:len(field)-1], "''", "'")
		}
		if field == "" {
			return "", "", "", errors.New("an empty JSON field after ->>")
		}
	}
	table, col, err = tableColumn(strings.TrimSpace(tc))
	return table, col, field, err
}

// tableColumn reads TABLE.COLUMN: a table of the run's schema (not
// qualified by another) and its column.
func tableColumn(spec string) (string, string, error) {
	parts := splitName(spec)
	if len(parts) != 2 {
		return "", "", errors.New("want TABLE.COLUMN, the table unqualified: it is in the run's schema")
	}
	t, err := identName(parts[0])
	if err != nil {
		return "", "", err
	}
	c, err := identName(parts[1])
	if err != nil {
		return "", "", err
	}
	return t, c, nil
}

// outputsTable reads "events" or "events(id, type, cause, payload)".
func outputsTable(spec string) (string, [4]string, error) {
	cols := [4]string{"id", "type", "cause", "payload"}
	name, list, hasList := strings.Cut(strings.TrimSpace(spec), "(")
	if len(splitName(name)) != 1 {
		return "", cols, errors.New("the table unqualified: it is in the run's schema")
	}
	table, err := identName(strings.TrimSpace(name))
	if err != nil {
		return "", cols, err
	}
	if !hasList {
		return table, cols, nil
	}
	list, ok := strings.CutSuffix(strings.TrimSpace(list), ")")
	parts := strings.Split(list, ",")
	if !ok || len(parts) != 4 {
		return "", cols, errors.New("want TABLE(ID, TYPE, CAUSE, PAYLOAD): four columns")
	}
	for i, p := range parts {
		if cols[i], err = identName(strings.TrimSpace(p)); err != nil {
			return "", cols, err
		}
	}
	return table, cols, nil
}
