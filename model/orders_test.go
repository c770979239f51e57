package model

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

func apply(t *testing.T, s State, typ, payload string) (State, Outputs) {
	t.Helper()
	next, outs, err := Orders{}.Apply(s, Message{Aggregate: "o1", Type: typ, Payload: json.RawMessage(payload)})
	require.NoError(t, err)
	return next, outs
}

func TestOrdersStory(t *testing.T) {
	s := Orders{}.Initial("o1")
	require.Equal(t, `{"confirmed":false,"lines":{}}`, s.String())

	s, outs := apply(t, s, AddItem, `{"sku":"a","qty":2}`)
	require.Equal(t, `[FirstItemAdded{"sku":"a"}, ItemAdded{"qty":2,"sku":"a"}]`, outs.String())
	s, outs = apply(t, s, AddItem, `{"sku":"a","qty":1}`)
	require.Equal(t, `[ItemAdded{"qty":3,"sku":"a"}]`, outs.String(), "ItemAdded carries the line's resulting quantity")
	s, outs = apply(t, s, RemoveItem, `{"sku":"b"}`)
	require.Empty(t, outs, "removing a missing line is a no-op")
	s, outs = apply(t, s, Confirm, `{}`)
	require.Equal(t, `[OrderConfirmed{"items":3}]`, outs.String())
	_, outs = apply(t, s, Confirm, `{}`)
	require.Equal(t, `[OrderRejected{"reason":"already confirmed"}]`, outs.String())
	_, outs = apply(t, s, AddItem, `{"sku":"c","qty":1}`)
	require.Equal(t, `[AddItemRejected{"sku":"c"}]`, outs.String())
	_, outs = apply(t, Orders{}.Initial("o2"), Confirm, `{}`)
	require.Equal(t, `[OrderRejected{"reason":"empty"}]`, outs.String())
}

func TestOrdersRejectsMalformedMessages(t *testing.T) {
	for _, m := range []Message{
		{Type: "Teleport", Payload: json.RawMessage(`{}`)},
		{Type: AddItem, Payload: json.RawMessage(`{"sku":"a"}`)},
		{Type: AddItem, Payload: json.RawMessage(`not json`)},
		{Type: RemoveItem, Payload: json.RawMessage(`{}`)},
	} {
		_, _, err := Orders{}.Apply(Orders{}.Initial("o1"), m)
		require.Error(t, err, "%s %s", m.Type, m.Payload)
	}
}

func TestOrdersWorkloadIsValidAndCanonical(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := Orders{}.Workload(8).Draw(t, "workload")
		require.NotEmpty(t, w)
		require.LessOrEqual(t, len(w), 8)
		states := map[string]State{}
		for i, m := range w {
			require.Equal(t, int64(i+1), m.Position)
			require.NotEmpty(t, m.ID)
			require.NotEmpty(t, m.Key)
			st, ok := states[m.Aggregate]
			if !ok {
				st = Orders{}.Initial(m.Aggregate)
			}
			next, _, err := Orders{}.Apply(st, m)
			require.NoError(t, err)
			// Canonical: re-encoding the decoded state gives the same bytes.
			var decoded OrderState
			require.NoError(t, json.Unmarshal(next, &decoded))
			again, err := EncodeState(decoded)
			require.NoError(t, err)
			require.True(t, again.Equal(next))
			require.Equal(t, st.String(), string(st), "Apply must not modify its input state")
			states[m.Aggregate] = next
		}
	})
}

func TestOutputsEqualIsMultisetEquality(t *testing.T) {
	a := Output{Type: "A", Payload: json.RawMessage(`1`)}
	b := Output{Type: "B"}
	require.True(t, Outputs{a, b}.Equal(Outputs{b, a}))
	require.False(t, Outputs{a, a}.Equal(Outputs{a, b}))
	require.False(t, Outputs{a}.Equal(Outputs{a, a}))
	require.True(t, Outputs{}.Equal(nil))
}

func TestBuiltInModelsWriteCanonicalJSON(t *testing.T) {
	for _, m := range []Model{Orders{}, Accounts{}, Profiles{}} {
		rapid.Check(t, func(t *rapid.T) {
			w := m.Workload(6).Draw(t, "workload")
			states := map[string]State{}
			for _, msg := range w {
				require.True(t, IsCanonical(msg.Payload), "%s payload %s", m.Name(), msg.Payload)
				st, ok := states[msg.Aggregate]
				if !ok {
					st = m.Initial(msg.Aggregate)
				}
				next, outs, err := m.Apply(st, msg)
				require.NoError(t, err)
				require.True(t, IsCanonical(next), "%s state %s", m.Name(), next)
				for _, o := range outs {
					require.True(t, IsCanonical(o.Payload), "%s output %s", m.Name(), o)
				}
				states[msg.Aggregate] = next
			}
		})
	}
}

func TestCanonicalAndSameJSON(t *testing.T) {
	c, err := Canonical([]byte(` { "b" : [1, {"y":2,"x":1}], "a": "s" } `))
	require.NoError(t, err)
	require.Equal(t, `{"a":"s","b":[1,{"x":1,"y":2}]}`, string(c))
	require.True(t, IsCanonical(c))
	for _, nc := range []string{`{"b":1,"a":2}`, `{ "a":1}`, `[1, 2]`, `{"a":1,"a":2}`, ``, `{"a":`} {
		require.False(t, IsCanonical([]byte(nc)), nc)
	}
	require.True(t, SameJSON([]byte(`{"qty":1,"sku":"a"}`), []byte(`{"sku":"a", "qty":1}`)))
	require.False(t, SameJSON([]byte(`{"qty":1,"sku":"a"}`), []byte(`{"qty":2,"sku":"a"}`)))
	require.False(t, SameJSON([]byte(`{"qty":1}`), []byte(`not json`)))
}

// TestNumbersCompareAsNumbers: two texts of one number are the same value,
// whatever their exponent, zeros or sign of zero.
func TestNumbersCompareAsNumbers(t *testing.T) {
	for in, want := range map[string]string{
		`2.0`: `2`, `2e0`: `2`, `20e-1`: `2`, `0.50`: `0.5`, `1e2`: `100`, `1.5E+3`: `1500`,
		`-0`: `0`, `-0.0`: `0`, `0e5`: `0`, `-1.250`: `-1.25`, `1e-3`: `0.001`, `12.5e-3`: `0.0125`,
		`12345678901234567890.0`: `12345678901234567890`, `{"a":[2.0,3e1]}`: `{"a":[2,30]}`,
		`1e400`: `1e400`, // too long in plain decimal: kept as written
	} {
		c, err := Canonical([]byte(in))
		require.NoError(t, err, in)
		require.Equal(t, want, string(c), in)
		again, err := Canonical(c)
		require.NoError(t, err)
		require.Equal(t, string(c), string(again), "canonical forms are fixed points: %s", in)
	}
	require.True(t, SameJSON([]byte(`{"qty":2.0}`), []byte(`{"qty":2}`)))
	require.False(t, SameJSON([]byte(`{"qty":2.5}`), []byte(`{"qty":2}`)))
	for _, nc := range []string{`2.0`, `1e2`, `-0`, `0.50`} {
		require.False(t, IsCanonical([]byte(nc)), nc)
	}
	for _, c := range []string{`2`, `-3`, `0.5`, `0`, `-0.25`} {
		require.True(t, IsCanonical([]byte(c)), c)
	}
}

// counter is a user model written with Typed.
var counter = Typed[map[string]int]{
	Title: "counter",
	Init:  func(string) map[string]int { return map[string]int{} },
	Step: func(s map[string]int, m Message) (map[string]int, Outputs, error) {
		p, err := Payload[struct{ By int }](m)
		if err != nil {
			return nil, nil, err
		}
		s["n"] += p.By
		return s, Outputs{Emit("Counted", map[string]int{"n": s["n"]})}, nil
	},
	Generate: func(max int) *rapid.Generator[Workload] {
		return rapid.Custom(func(t *rapid.T) Workload {
			n := rapid.IntRange(1, max).Draw(t, "n")
			var w Workload
			for range n {
				w = append(w, Send("c1", "Add", map[string]int{"By": rapid.IntRange(1, 3).Draw(t, "by")}))
			}
			return w.Number()
		})
	},
}

func TestTypedModel(t *testing.T) {
	s := counter.Initial("c1")
	require.Equal(t, `{}`, s.String())
	s, outs, err := counter.Apply(s, Send("c1", "Add", map[string]int{"By": 2}))
	require.NoError(t, err)
	require.Equal(t, `{"n":2}`, s.String())
	require.Equal(t, `[Counted{"n":2}]`, outs.String())
	_, _, err = counter.Apply(s, Message{Type: "Add", Payload: []byte(`"x"`)})
	require.Error(t, err)
	w := counter.Workload(3).Example(1)
	require.NotEmpty(t, w)
	require.Equal(t, "m1", w[0].ID)
}

// jsonish draws texts close to JSON: valid values with keys in any order,
// spaces, escapes, keys that sort differently as strings and as quoted
// bytes, numbers valid and not, and broken literals.
func jsonish(t *rapid.T, depth int) string {
	atoms := []string{`0`, `-0`, `1`, `01`, `1.5`, `1.`, `.5`, `1e5`, `1E+2`, `1e`, `-`, `--1`, `true`, `tru`, `null`, `nul`, `false`,
		`"a"`, `"a!"`, `"a "`, `"\u00e9"`, `"\/"`, `"é"`, `""`, `"`}
	if depth == 0 {
		return rapid.SampledFrom(atoms).Draw(t, "atom")
	}
	switch rapid.IntRange(0, 2).Draw(t, "kind") {
	case 0:
		return rapid.SampledFrom(atoms).Draw(t, "atom")
	case 1:
		n := rapid.IntRange(0, 3).Draw(t, "len")
		parts := make([]string, n)
		for i := range parts {
			parts[i] = jsonish(t, depth-1)
		}
		return "[" + strings.Join(parts, rapid.SampledFrom([]string{",", ", "}).Draw(t, "sep")) + "]"
	default:
		n := rapid.IntRange(0, 3).Draw(t, "len")
		parts := make([]string, n)
		for i := range parts {
			key := rapid.SampledFrom([]string{`"a"`, `"a!"`, `"a "`, `"b"`, `"ab"`, `"\u0061"`, `"A"`}).Draw(t, "key")
			parts[i] = key + rapid.SampledFrom([]string{":", " : "}).Draw(t, "colon") + jsonish(t, depth-1)
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
}

// TestIsCanonicalIsExact: whatever IsCanonical accepts is valid JSON that
// decoding and encoding leaves byte for byte as it is, which is what lets
// Canonical return it untouched.
func TestIsCanonicalIsExact(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		raw := []byte(jsonish(t, 3))
		if !IsCanonical(raw) {
			return
		}
		require.True(t, json.Valid(raw), "%s", raw)
		again, err := reencode(raw)
		require.NoError(t, err)
		require.Equal(t, string(raw), string(again))
	})
	require.False(t, IsCanonical([]byte(`{"a!":1,"a":2}`)), "Go orders the key a before a!")
	require.True(t, IsCanonical([]byte(`{"a":2,"a!":1}`)))
	require.True(t, SameJSON([]byte(`{"a!":1,"a":2}`), []byte(`{"a":2,"a!":1}`)))
}
