package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/faults"
)

// completionCmd prints a shell completion script: commands, their flags,
// and the values of --strategy, --model, --backend, --faults, --format and
// --isolation.
func completionCmd(_ context.Context, cat catalogue.Catalogue, args []string, stdout, _ io.Writer) (int, error) {
	fs := newFlagSet("completion", "completion bash|zsh|fish", `  source <(oncecheck completion bash)
  oncecheck completion zsh > "${fpath[1]}/_oncecheck"
  oncecheck completion fish > ~/.config/fish/completions/oncecheck.fish
`, stdout)
	rest, err := parse(fs, args)
	if err != nil {
		return exitUsage, err
	}
	if len(rest) != 1 {
		return exitUsage, usagef("want one shell: bash, zsh or fish")
	}
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	kinds := []string{"all"}
	for _, k := range faults.AllKinds {
		kinds = append(kinds, string(k))
	}
	values := map[string]string{
		"--strategy":  strings.Join(cat.StrategyNames(), " "),
		"--model":     strings.Join(cat.ModelNames(), " "),
		"--backend":   strings.Join(cat.BackendNames(), " "),
		"--faults":    strings.Join(kinds, " "),
		"--format":    "text markdown json",
		"--isolation": "read-committed repeatable-read serializable",
	}
	flags := "--strategy --model --backend --pg --faults --runs --seed --out --keep-all --keep-db --max-messages --max-faults --downstream --isolation --broker --lock-timeout --free-running --consumers --record --cache --max-delay --output-order --shrink-time --check-timeout --swarm --check-determinism --exhaustive --junit --format --expect --parallel --shrink --shard --json --html --timeout -q -v --help --version"
	switch rest[0] {
	case "bash":
		fmt.Fprintf(stdout, `# bash completion for oncecheck
_oncecheck() {
	local cur prev
	cur="${COMP_WORDS[COMP_CWORD]}"
	prev="${COMP_WORDS[COMP_CWORD-1]}"
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W %q -- "$cur"))
		return
	fi
	case "$prev" in
`, strings.Join(names, " ")+" help")
		for _, f := range []string{"--strategy", "--model", "--backend", "--faults", "--format", "--isolation"} {
			fmt.Fprintf(stdout, "\t%s) COMPREPLY=($(compgen -W %q -- \"$cur\")); return ;;\n", f, values[f])
		}
		fmt.Fprintf(stdout, `	esac
	if [[ "$cur" == -* ]]; then
		COMPREPLY=($(compgen -W %q -- "$cur"))
	else
		COMPREPLY=($(compgen -f -- "$cur"))
	fi
}
complete -F _oncecheck oncecheck
`, flags)
	case "zsh":
		fmt.Fprintf(stdout, "#compdef oncecheck\n# zsh completion for oncecheck (uses the bash one)\nautoload -U +X bashcompinit && bashcompinit\n")
		if code, err := completionCmd(context.Background(), cat, []string{"bash"}, stdout, io.Discard); err != nil {
			return code, err
		}
	case "fish":
		fmt.Fprintf(stdout, "# fish completion for oncecheck\ncomplete -c oncecheck -f -n '__fish_use_subcommand' -a %q\n", strings.Join(names, " "))
		for f, v := range values {
			fmt.Fprintf(stdout, "complete -c oncecheck -l %s -x -a %q\n", strings.TrimPrefix(f, "--"), v)
		}
	default:
		return exitUsage, usagef("unknown shell %q (bash, zsh or fish)", rest[0])
	}
	return exitPass, nil
}
