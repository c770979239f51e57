package service

import (
	"os/exec"
	"strings"
)

// command returns the command that runs line: the program itself when
// line is plain words (letters, digits and _-./=:,@%+), led by any
// NAME=value assignments and an optional exec, which sh -c would run the
// same way; otherwise sh -c line. Starting the program directly spares a
// shell's start at every process start and restart. extra is the
// environment of the process, the assignments' values after it.
func command(line string, extra []string) *exec.Cmd {
	words, ok := plainWords(line)
	if !ok {
		cmd := exec.Command("sh", "-c", line)
		cmd.Env = extra
		return cmd
	}
	env := slicesClone(extra)
	for len(words) > 0 && assignment(words[0]) {
		env = append(env, words[0])
		words = words[1:]
	}
	if len(words) > 0 && words[0] == "exec" {
		words = words[1:]
	}
	if len(words) == 0 || assignment(words[0]) || strings.HasPrefix(words[0], "-") || shellWords[words[0]] {
		cmd := exec.Command("sh", "-c", line)
		cmd.Env = extra
		return cmd
	}
	cmd := exec.Command(words[0], words[1:]...)
	if cmd.Err != nil { // not found: sh says why, as before
		cmd = exec.Command("sh", "-c", line)
		cmd.Env = extra
		return cmd
	}
	cmd.Env = env
	return cmd
}

// shellWords are the words a shell reads as its own (keywords and
// builtins) rather than as a program to run, when they lead a command.
var shellWords = map[string]bool{
	"if": true, "then": true, "else": true, "elif": true, "fi": true, "for": true, "while": true, "until": true,
	"do": true, "done": true, "case": true, "esac": true, "in": true, "function": true, "select": true, "time": true,
	".": true, "source": true, "cd": true, "command": true, "eval": true, "exec": true, "exit": true, "export": true,
	"readonly": true, "set": true, "shift": true, "trap": true, "ulimit": true, "umask": true, "unset": true,
	"wait": true, "alias": true, "builtin": true, "type": true, "read": true, "return": true, "local": true,
}

// plainWords splits line at spaces when it holds nothing a shell would
// read otherwise (quotes, variables, globs, redirections, operators).
func plainWords(line string) ([]string, bool) {
	for _, r := range line {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == ' ':
		case strings.ContainsRune("_-./=:,@%+", r):
		default:
			return nil, false
		}
	}
	words := strings.Fields(line)
	return words, len(words) > 0
}

// assignment reports whether a word is a shell variable assignment:
// NAME=value, NAME a letter or _ then letters, digits or _.
func assignment(w string) bool {
	name, _, ok := strings.Cut(w, "=")
	if !ok || name == "" {
		return false
	}
	for i, r := range name {
		letter := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return true
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
