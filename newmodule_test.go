package oncecheck

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func guide(t *testing.T) string {
	doc, err := os.ReadFile("docs/writing-an-adapter.md")
	require.NoError(t, err)
	return string(doc)
}

// newModule builds a fresh module in a temporary directory from the code
// of docs/writing-an-adapter.md (its model, handlers, tests and main, as
// a new user would paste them), importing oncecheck by its module path
// with a replace directive to this checkout. It returns the module's
// directory, the guide's CI recipe, and a function that runs a shell
// command there and returns its output and exit code.
func newModule(t *testing.T) (dir, recipe string, sh func(command string) (string, int)) {
	doc := guide(t)
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(doc, -1)
	require.Len(t, blocks, 7, "the guide has the model, the handlers, two tests, the main, the cached handler and its test")
	yaml := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(doc)
	require.NotNil(t, yaml, "the guide has a CI recipe")
	here, err := os.Getwd()
	require.NoError(t, err)
	dir = t.TempDir()
	write := func(name, content string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
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

`+blocks[0][1]+"\n"+blocks[1][1]+"\n"+blocks[5][1])
	testFile := func(name, code string) {
		write(name, "package counter\n\nimport (\n\t\"testing\"\n\n\t\"github.com/oncecheck/oncecheck\"\n\t\"github.com/oncecheck/oncecheck/model\"\n)\n\nvar _ model.Message\n\n"+code)
	}
	testFile("counter_test.go", blocks[2][1])
	testFile("broken_test.go", blocks[3][1])
	testFile("cached_test.go", blocks[6][1])
	write("cmd/counter/main.go", blocks[4][1])
	// Our go.sum covers the dependencies the new module needs.
	sum, err := os.ReadFile("go.sum")
	require.NoError(t, err)
	write("go.sum", string(sum))
	sh = func(command string) (string, int) {
		cmd := exec.Command("sh", "-c", command)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "NO_COLOR=1")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return string(out), exit.ExitCode()
		}
		require.NoError(t, err, "%s:\n%s", command, out)
		return string(out), 0
	}
	out, code := sh("go mod tidy")
	require.Zero(t, code, out)
	return dir, yaml[1], sh
}

// TestANewModuleFollowingTheGuide is a new user's afternoon: the module
// the guide builds passes its test for the correct handler, fails the one
// for the broken handler, and every command that failure prints works as
// printed from the module's root; the exhaustive mode runs on the guide's
// model.
func TestANewModuleFollowingTheGuide(t *testing.T) {
	if testing.Short() {
		t.Skip("heavy: make test runs it in its second step, without -race and -short")
	}
	dir, _, sh := newModule(t)

	out, code := sh("go test -count=1 -v -run '^TestCounterIsExactlyOnce$' .")
	require.Zero(t, code, out)
	require.Contains(t, out, "--- PASS: TestCounterIsExactlyOnce")
	require.Contains(t, out, "counter is exactly-once over 300 runs")

	// The cached handler of section 7: the cache and the clock.
	out, code = sh("go test -count=1 -v -run '^TestCachedCounterIsExactlyOnce$' .")
	require.Zero(t, code, out)
	require.Contains(t, out, "--- PASS: TestCachedCounterIsExactlyOnce")
	require.Contains(t, out, "counter-cached is exactly-once over 300 runs")

	// The exhaustive mode, on the model's listed messages.
	exhaustive := "go run ./cmd/counter run --exhaustive --model counter --strategy counter --max-messages 2 --max-faults 1"
	require.Contains(t, guide(t), exhaustive)
	out, code = sh(exhaustive)
	require.Zero(t, code, out)
	require.Regexp(t, `explored 10 workload shapes and \d+ schedules`, out)
	require.Contains(t, out, "PASS: no violation with up to 2 messages and 1 faults")
	out, code = sh(strings.Replace(exhaustive, "--strategy counter", "--strategy counter-by-id", 1) + " --out exhaustive-results")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "VIOLATION (a smallest one")
	require.Contains(t, out, "duplicate")

	out, code = sh("go test -count=1 -run '^TestBrokenCounterIsCaught$' .")
	require.Equal(t, 1, code, out)
	require.Regexp(t, `oncecheck: counter-by-id is not exactly-once: .*duplicate`, out)
	var printed []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		for _, prefix := range []string{"replay (from the module's root): ", "report: ", "check:  ", "replay: "} {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				printed = append(printed, rest)
			}
		}
	}
	require.Len(t, printed, 4, out)
	saved := regexp.MustCompile(`saved: (\S+)`).FindStringSubmatch(out)
	require.NotNil(t, saved, out)
	require.True(t, strings.HasPrefix(saved[1], filepath.Join(dir, "testdata", "oncecheck")+string(filepath.Separator)), saved[1])
	info, err := os.Stat(saved[1])
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), info.Mode().Perm())
	require.Regexp(t, `^counter-by-id-counter-all-[a-z-]+-mem-\d+\.jsonl$`, filepath.Base(saved[1]), "the name says the backend")

	for _, command := range printed {
		out, code := sh(command)
		require.Equal(t, 1, code, "%s: the violation again, exit 1:\n%s", command, out)
		require.NotContains(t, out, "unknown model", command)
		switch {
		case strings.Contains(command, "go test"):
			require.Contains(t, out, "events identical to the saved ones: true", command)
		case strings.Contains(command, " show --html "):
			require.Contains(t, out, "report written to report.html")
			require.FileExists(t, filepath.Join(dir, "report.html"))
		case strings.Contains(command, " check "):
			require.Regexp(t, `VIOLATION: .*duplicate`, out)
		default:
			require.Contains(t, out, "identical to the saved history")
		}
	}
	// With -artifacts, the counterexample goes under the output directory.
	out, code = sh(`mkdir -p arts && go test -count=1 -artifacts -outputdir "$PWD/arts" -run '^TestBrokenCounterIsCaught$' .`)
	require.Equal(t, 1, code, out)
	artifact := regexp.MustCompile(`saved: (\S+)`).FindStringSubmatch(out)
	require.NotNil(t, artifact, out)
	require.True(t, strings.HasPrefix(artifact[1], filepath.Join(dir, "arts")+string(filepath.Separator)), artifact[1])
	require.FileExists(t, artifact[1])

	// The broken handler's failure, replayed on the fixed one, passes.
	out, code = sh("go run ./cmd/counter replay --strategy counter " + saved[1])
	require.Zero(t, code, out)
}

// TestTheGuidesCIRecipeRunsInANewModule runs the steps of the guide's CI
// recipe in the module the guide builds, the campaign's two shards
// included, and finds their merge equal to the unsharded campaign.
func TestTheGuidesCIRecipeRunsInANewModule(t *testing.T) {
	if testing.Short() {
		t.Skip("heavy: make test runs it in its second step, without -race and -short")
	}
	dir, recipe, sh := newModule(t)
	require.NoError(t, os.Remove(filepath.Join(dir, "broken_test.go")), "a repository's CI verifies its fixed handler")
	var steps []string
	for _, line := range strings.Split(recipe, "\n") {
		if step, ok := strings.CutPrefix(strings.TrimSpace(line), "- run: "); ok {
			steps = append(steps, step)
		}
	}
	require.Len(t, steps, 3, recipe)
	for _, step := range steps {
		variants := []string{step}
		if strings.Contains(step, "${{ matrix.shard }}") {
			variants = []string{strings.ReplaceAll(step, "${{ matrix.shard }}", "1"), strings.ReplaceAll(step, "${{ matrix.shard }}", "2")}
		}
		for _, s := range variants {
			out, code := sh(s)
			require.Zero(t, code, "%s:\n%s", s, out)
		}
	}
	junit, err := os.ReadFile(filepath.Join(dir, "oncecheck.xml"))
	require.NoError(t, err)
	require.Contains(t, string(junit), `tests="1" failures="0" errors="0"`)

	// The shards merged are the unsharded campaign, timings aside.
	merged, code := sh("go run ./cmd/counter merge --format json shard-1.json shard-2.json")
	require.Zero(t, code, merged)
	whole, code := sh("go run ./cmd/counter run --model counter --strategy counter --runs 2000 --seed 1 --json --out oncecheck-results")
	require.Zero(t, code, whole)
	require.Equal(t, withoutTimings(t, whole), withoutTimings(t, merged))
}

// withoutTimings decodes a JSON object without its wall-clock fields.
func withoutTimings(t *testing.T, s string) map[string]any {
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(s), &v), s)
	delete(v, "ms_to_failure")
	delete(v, "shrink_ms")
	return v
}
