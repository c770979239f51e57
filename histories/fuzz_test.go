package histories

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds the reader arbitrary bytes: it must never panic, and
// what it accepts must survive a round trip (encode, decode, same events).
// Seeds: every history of the regression corpus and broken variants.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/corpus/*.jsonl")
	for i, file := range files {
		if i%8 != 0 { // a sample keeps the fuzzer's start fast
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])                                                    // truncated
		f.Add(bytes.Replace(b, []byte(`"step":2,`), []byte(`"step":"2",`), 1)) // wrong type
		f.Add(bytes.Replace(b, []byte(`"deliver"`), []byte(`"teleport"`), 1))  // unknown kind
	}
	f.Add([]byte(""))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"format":"oncecheck-history","version":"9.0","model":"orders","workload":[],"plan":{"faults":[]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := Decode(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := h.Encode(&buf); err != nil {
			t.Fatalf("accepted history does not encode: %v", err)
		}
		again, err := Decode(&buf, "again")
		if err != nil {
			t.Fatalf("accepted history does not decode after encoding: %v\n%s", err, buf.String())
		}
		if again.Hash() != h.Hash() {
			t.Fatalf("round trip changed the events")
		}
	})
}
