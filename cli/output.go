package cli

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/oncecheck/oncecheck/adapters/pgstore"
)

// output is what every command writes to: it masks the passwords of
// DSNs (those given on the command line and in $ONCECHECK_PG, and any
// in a URL or a password=... setting) and escapes control characters, so
// that a history's names cannot drive the terminal. On a terminal it lets
// the tool's own colours and carriage returns through.
type output struct {
	w        io.Writer
	secrets  []string
	terminal bool
	colours  bool
}

func newOutput(w io.Writer, secrets []string) *output {
	if o, ok := w.(*output); ok {
		return o
	}
	term := isTerminal(w)
	return &output{w: w, secrets: secrets, terminal: term, colours: term && os.Getenv("NO_COLOR") == ""}
}

var (
	urlPassword = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://[^:/@\s"']*:)[^@\s"']*@`)
	kvPassword  = regexp.MustCompile(`(?i)(password\s*=\s*)('[^']*'|[^\s"']+)`)
	// sgr are the colour sequences the tool writes itself (term.go).
	sgr = regexp.MustCompile(`^\x1b\[[0-9;]*m`)
)

const mask = "xxxxx"

// Write implements io.Writer; it reports len(p) on success.
func (o *output) Write(p []byte) (int, error) {
	s := string(p)
	for _, secret := range o.secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, mask)
		}
	}
	s = urlPassword.ReplaceAllString(s, "${1}"+mask+"@")
	s = kvPassword.ReplaceAllString(s, "${1}"+mask)
	var b bytes.Buffer
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r == '\r' && o.terminal:
			b.WriteRune(r)
		case r == 0x1b && o.colours && sgr.MatchString(s[i:]):
			m := sgr.FindString(s[i:])
			b.WriteString(m)
			size = len(m)
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x20:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	if _, err := o.w.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// passwords returns the passwords of the DSNs a command line can use: its
// --pg flag and $ONCECHECK_PG.
func passwords(args []string) []string {
	var dsns []string
	if v := os.Getenv(pgstore.DSNEnv); v != "" {
		dsns = append(dsns, v)
	}
	for i, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name != "pg" || !strings.HasPrefix(a, "-") {
			continue
		}
		if hasValue {
			dsns = append(dsns, value)
		} else if i+1 < len(args) {
			dsns = append(dsns, args[i+1])
		}
	}
	var secrets []string
	for _, dsn := range dsns {
		if pw := dsnPassword(dsn); len(pw) >= 3 { // shorter ones would mask ordinary words
			secrets = append(secrets, pw, url.QueryEscape(pw))
		}
	}
	return secrets
}

// dsnPassword is the password of a DSN, as a URL or as key=value pairs.
func dsnPassword(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		pw, _ := u.User.Password()
		return pw
	}
	if m := urlPassword.FindStringSubmatch(dsn + " "); m != nil {
		// Not a valid URL: the text between the user and the @.
		rest := strings.TrimPrefix(dsn, m[1])
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			return rest[:at]
		}
	}
	if m := kvPassword.FindStringSubmatch(dsn); m != nil {
		return strings.Trim(m[2], "'")
	}
	return ""
}

// maskDSN returns dsn with its password masked, for messages.
func maskDSN(dsn string) string {
	o := &output{secrets: []string{dsnPassword(dsn)}}
	var b bytes.Buffer
	o.w = &b
	_, _ = o.Write([]byte(dsn))
	return b.String()
}
