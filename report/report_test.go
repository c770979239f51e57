package report

import (
	"bytes"
	"html"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// sample is a saved counterexample from the matrix: publish-first crashes
// between its publish and its commit, and publishes a ghost.
const sample = "../histories/testdata/corpus/publish-first-orders-crash-ghost-mem-15.jsonl"

func load(t *testing.T) (*histories.History, checkers.Result) {
	t.Helper()
	h, err := histories.Load(sample)
	require.NoError(t, err)
	require.Equal(t, "orders", h.Header.Model)
	res, err := checkers.Check(h, model.Orders{}, checkers.Options{})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict)
	return h, res
}

func TestLanesPutEachProcessInItsColumn(t *testing.T) {
	h, _ := load(t)
	procs, cells := Lanes(h)
	require.Equal(t, []string{"sender", "consumer-1", "broker", "observer"}, procs)
	require.Len(t, cells, len(h.Events))
	faults := 0
	for _, c := range cells {
		require.Equal(t, h.Events[c.Step-1].Process, procs[c.Lane])
		if c.Fault {
			faults++
		}
	}
	require.Equal(t, 1, faults, "the one crash is marked")
}

func TestTextReport(t *testing.T) {
	h, res := load(t)
	var b bytes.Buffer
	require.NoError(t, Text(&b, "sample", h, res))
	out := b.String()
	require.Contains(t, out, "verdict: VIOLATION: ghost")
	require.Contains(t, out, "| consumer-1 ")
	require.Contains(t, out, "!! #1 CRASH at before-commit")
}

// chromium returns a headless Chromium on PATH. Without one the test is
// skipped, saying why, except under $CI, where it fails (make test-deps
// says so and installs Debian's package when it can).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "headless Chromium is needed for the HTML report test: none on PATH (Debian: apt-get install chromium; make test-deps does it)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func headless(t *testing.T, args ...string) []byte {
	t.Helper()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}
	out, err := exec.Command(chromium(t), append(base, args...)...).Output()
	require.NoError(t, err)
	return out
}

// TestHTMLReportRendersInChromium opens the report of a saved
// counterexample in headless Chromium: the rendered page shows the verdict,
// the explanation and the timeline, porcupine's view is embedded, and a
// screenshot is not blank.
func TestHTMLReportRendersInChromium(t *testing.T) {
	h, res := load(t)
	page := filepath.Join(t.TempDir(), "report.html")
	var b bytes.Buffer
	require.NoError(t, HTML(&b, "sample", h, res, model.Orders{}, checkers.Options{}))
	require.NoError(t, os.WriteFile(page, b.Bytes(), 0o644))
	external := regexp.MustCompile(`(src|href)\s*=\s*["']?(https?:)?//`)
	require.False(t, external.MatchString(html.UnescapeString(b.String())), "self-contained: no external resources")

	dom := string(headless(t, "--dump-dom", "file://"+page))
	require.Contains(t, dom, `id="verdict"`)
	require.Contains(t, dom, "VIOLATION: ghost")
	require.Contains(t, dom, "whose state change never committed")
	require.Contains(t, dom, `<table class="lanes" id="timeline">`)
	require.Contains(t, dom, "consumer-1</th>")
	require.Contains(t, dom, `<tr class="fault">`)
	require.Contains(t, dom, "porcupine visualization")

	shot := filepath.Join(t.TempDir(), "shot.png")
	headless(t, "--screenshot="+shot, "--window-size=1200,1600", "file://"+page)
	f, err := os.Open(shot)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	colours := map[uint32]bool{}
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y += 7 {
		for x := bounds.Min.X; x < bounds.Max.X; x += 7 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[r>>8<<16|g>>8<<8|bl>>8] = true
		}
	}
	require.Greater(t, len(colours), 10, "the screenshot is not blank")
	require.True(t, strings.HasSuffix(shot, ".png"))
}
