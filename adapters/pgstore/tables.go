package pgstore

import (
	"fmt"
	"strings"

	"github.com/oncecheck/oncecheck/adapters/strategykit"
)

// tableDDL returns the table's CREATE TABLE statement (unqualified: it is meant
// to run with the schema on the search path) and its comment.
func tableDDL(t strategykit.TableSpec) string {
	cols := []string{fmt.Sprintf(`%s text COLLATE "C" PRIMARY KEY`, quoteIdent(t.Key))}
	if t.Value != "" {
		cols = append(cols, fmt.Sprintf("%s %s NOT NULL", quoteIdent(t.Value), valueType(t)))
	}
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s);\nCOMMENT ON TABLE %s IS '%s';",
		quoteIdent(t.Name), strings.Join(cols, ", "), quoteIdent(t.Name), strings.ReplaceAll(t.Doc, "'", "''"))
}

func valueType(t strategykit.TableSpec) string {
	if t.Type == "" {
		return "text"
	}
	return t.Type
}

// quoteIdent quotes a SQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
