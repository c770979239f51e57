package adapters

import (
	"fmt"
	"slices"
	"strings"
)

// TableSpec is how a SQL backend lays out one table of the key-value Tx: a
// table of its own, named as in Tx calls, whose primary key is the Tx's key
// (a unique constraint: Insert is INSERT ... ON CONFLICT DO NOTHING), with
// a value column of a real type. The built-in strategies' tables are
// declared here (Tables); a table a handler uses without a declaration
// lives in a generic table of keys and values.
type TableSpec struct {
	// Name is the table's name in Tx calls and in SQL.
	Name string
	// Key is the primary-key column.
	Key string
	// Value is the value column; "" for a table that records keys only
	// (its values are nil).
	Value string
	// Type is the value column's SQL type: "text" (UTF-8 values, the
	// default) or "bigint" (decimal numbers, as PutCounter writes them).
	Type string
	// Doc says what a row means (the table's COMMENT).
	Doc string
}

// DDL returns the table's CREATE TABLE statement (unqualified: it is meant
// to run with the schema on the search path) and its comment.
func (t TableSpec) DDL() string {
	cols := []string{fmt.Sprintf(`%s text COLLATE "C" PRIMARY KEY`, quoteIdent(t.Key))}
	if t.Value != "" {
		cols = append(cols, fmt.Sprintf("%s %s NOT NULL", quoteIdent(t.Value), t.valueType()))
	}
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s);\nCOMMENT ON TABLE %s IS '%s';",
		quoteIdent(t.Name), strings.Join(cols, ", "), quoteIdent(t.Name), strings.ReplaceAll(t.Doc, "'", "''"))
}

func (t TableSpec) valueType() string {
	if t.Type == "" {
		return "text"
	}
	return t.Type
}

// quoteIdent quotes a SQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Table names of the built-in strategies, beside StateTable and
// OutboxTable.
const (
	// ProcessedTable records the ids (or keys) of processed messages.
	ProcessedTable = "processed"
	// PositionTable keeps, per aggregate, the position of the last message
	// applied (the sequence strategy).
	PositionTable = "position"
	// VersionTable keeps, per aggregate, the number of messages applied
	// (the version strategy).
	VersionTable = "version"
	// ReservationTable keeps, per idempotence key, the outcome reserved for
	// it (the reservation strategy).
	ReservationTable = "reservation"
)

var tables = []TableSpec{
	{Name: StateTable, Key: "aggregate_id", Value: "state", Doc: "the durable state of each aggregate, as the model's canonical JSON"},
	{Name: OutboxTable, Key: "outbox_id", Value: "message", Doc: "outputs stored with the state, waiting for the dispatcher (a message as JSON)"},
	{Name: ProcessedTable, Key: "message_id", Doc: "the ids (or idempotence keys) of processed messages"},
	{Name: PositionTable, Key: "aggregate_id", Value: "position", Type: "bigint", Doc: "the position of the last message applied to each aggregate"},
	{Name: VersionTable, Key: "aggregate_id", Value: "version", Type: "bigint", Doc: "the number of messages applied to each aggregate"},
	{Name: ReservationTable, Key: "idempotency_key", Value: "outcome", Doc: "the outcome reserved for each idempotence key (JSON)"},
}

// Tables returns the declared tables, sorted by name.
func Tables() []TableSpec {
	out := slices.Clone(tables)
	slices.SortFunc(out, func(a, b TableSpec) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// LookupTable returns the declaration of a table, if it has one.
func LookupTable(name string) (TableSpec, bool) {
	for _, t := range tables {
		if t.Name == name {
			return t, true
		}
	}
	return TableSpec{}, false
}
