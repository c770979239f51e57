package oncecheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestANewModuleFollowingTheGuideVerifies builds a fresh module in a
// temporary directory from the code of docs/writing-an-adapter.md (its
// model, handler and test, and the cached handler and its test, as a new
// user would paste them), importing
// oncecheck by its module path (with a replace directive to this
// checkout), and runs its go test: the handler verifies.
func TestANewModuleFollowingTheGuideVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("heavy: make test runs it in its second step, without -race and -short")
	}
	doc, err := os.ReadFile("docs/writing-an-adapter.md")
	require.NoError(t, err)
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	require.Len(t, blocks, 5, "the guide has the model, the handler, the test, the cached handler and its test")
	here, err := os.Getwd()
	require.NoError(t, err)
	dir := t.TempDir()
	write := func(name, content string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	write("go.mod", "module example.com/counter\n\ngo 1.26\n\nrequire github.com/oncecheck/oncecheck v0.0.0\n\nreplace github.com/oncecheck/oncecheck => "+here+"\n")
	write("counter.go", `package counter

import (
	"fmt"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
	"pgregory.net/rapid"
)

`+blocks[0][1]+"\n"+blocks[1][1]+"\n"+blocks[3][1])
	write("counter_test.go", `package counter

import (
	"testing"

	"github.com/oncecheck/oncecheck"
)

`+blocks[2][1]+"\n"+blocks[4][1])
	// Our go.sum covers the dependencies the new module needs.
	sum, err := os.ReadFile("go.sum")
	require.NoError(t, err)
	write("go.sum", string(sum))
	run := func(args ...string) string {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %s:\n%s", strings.Join(args, " "), out)
		return string(out)
	}
	run("mod", "tidy")
	out := run("test", "-count=1", "-v", ".")
	require.Contains(t, out, "--- PASS: TestCounterIsExactlyOnce")
	require.Contains(t, out, "counter is exactly-once over 300 runs")
	require.Contains(t, out, "--- PASS: TestCachedCounterIsExactlyOnce")
	require.Contains(t, out, "counter-cached is exactly-once over 300 runs")
}
