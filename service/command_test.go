package service

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCommandRunsPlainWordsWithoutAShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	require.NoError(t, err)
	env := []string{"A=1"}
	for _, tc := range []struct {
		line, path string
		args, env  []string
	}{
		{line: "/bin/prog --flag x", path: "/bin/prog", args: []string{"/bin/prog", "--flag", "x"}, env: env},
		{line: "ORDERS_BUG= exec /bin/prog", path: "/bin/prog", args: []string{"/bin/prog"}, env: []string{"A=1", "ORDERS_BUG="}},
		{line: "  X=1 Y_2=a:b exec ./bin/prog -v  ", path: "./bin/prog", args: []string{"./bin/prog", "-v"}, env: []string{"A=1", "X=1", "Y_2=a:b"}},
		{line: "exec ./prog", path: "./prog", args: []string{"./prog"}, env: env},
		// What a shell reads otherwise goes to the shell.
		{line: "ORDERS_BUG='x y' ./prog", path: sh, args: []string{"sh", "-c", "ORDERS_BUG='x y' ./prog"}, env: env},
		{line: "./prog $HOME", path: sh, args: []string{"sh", "-c", "./prog $HOME"}, env: env},
		{line: "./prog > out", path: sh, args: []string{"sh", "-c", "./prog > out"}, env: env},
		{line: "./a && ./b", path: sh, args: []string{"sh", "-c", "./a && ./b"}, env: env},
		{line: "cd dir", path: sh, args: []string{"sh", "-c", "cd dir"}, env: env},
		{line: "X=1", path: sh, args: []string{"sh", "-c", "X=1"}, env: env},
		{line: "exec -a name ./prog", path: sh, args: []string{"sh", "-c", "exec -a name ./prog"}, env: env},
		{line: "no-such-program-here", path: sh, args: []string{"sh", "-c", "no-such-program-here"}, env: env},
		{line: "1X=2 ./prog", path: sh, args: []string{"sh", "-c", "1X=2 ./prog"}, env: env},
	} {
		cmd := command(tc.line, env)
		require.Equal(t, tc.path, cmd.Path, tc.line)
		require.Equal(t, tc.args, cmd.Args, tc.line)
		require.Equal(t, tc.env, cmd.Env, tc.line)
	}
}

// TestCommandRunsLikeTheShell: a plain command line started directly
// gets the environment and arguments sh -c gives it.
func TestCommandRunsLikeTheShell(t *testing.T) {
	env := []string{"V=from-env", "W=w"}
	line := "V=from-line exec env"
	direct := command(line, env)
	require.NotEqual(t, "sh", filepath.Base(direct.Path), "started directly")
	got, err := direct.Output()
	require.NoError(t, err)
	viaSh := exec.Command("sh", "-c", line)
	viaSh.Env = env
	want, err := viaSh.Output()
	require.NoError(t, err)
	require.ElementsMatch(t, ownVars(want), ownVars(got))
	require.Contains(t, ownVars(got), "V=from-line")
}

// ownVars are the variables of env's output but those a shell sets
// itself (PWD, SHLVL, _).
func ownVars(out []byte) []string {
	var vars []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && !strings.HasPrefix(l, "PWD=") && !strings.HasPrefix(l, "SHLVL=") && !strings.HasPrefix(l, "_=") {
			vars = append(vars, l)
		}
	}
	return vars
}
