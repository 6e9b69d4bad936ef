package keel

import (
	"errors"
	"testing"
	"time"

	"github.com/keelhq/keel/abi/wire"
)

type stringer struct{}

func (stringer) String() string { return "from String" }

func TestAppendText(t *testing.T) {
	ts := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    any
		want string
	}{
		{nil, "<nil>"}, {"s", "s"}, {[]byte("b"), "b"}, {true, "true"}, {-3, "-3"}, {int8(-8), "-8"}, {uint16(16), "16"},
		{uint64(1 << 63), "9223372036854775808"}, {float32(0.1), "0.1"}, {2.5e-9, "2.5e-09"}, {ts, "2026-12-02T00:00:00Z"},
		{1500 * time.Millisecond, "1.5s"}, {errors.New("bad"), "bad"}, {stringer{}, "from String"},
		{wire.CodeDenied, wire.CodeDenied.String()}, {struct{ A int }{1}, unformatted},
	} {
		if got := string(appendText(nil, tc.v)); got != tc.want {
			t.Errorf("appendText(%#v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestLogAttrs(t *testing.T) {
	l := Log.With("plugin_attr", 1)
	buf := appendLogAttrs(append([]byte(nil), l.attrs...), []any{"k", "v", 42, "odd"})
	f, err := wire.DecodeFields(buf)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range f.All(logAttr) {
		k, v, err := wire.Pair(p)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(k)+"="+string(v))
	}
	want := []string{"plugin_attr=1", "k=v", "!BADKEY=42", "!BADKEY=odd"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("attr %d: %q, want %q", i, got[i], want[i])
		}
	}
	if len(Log.attrs) != 0 {
		t.Errorf("With changed the parent logger: %q", Log.attrs)
	}
}

func TestHostErrorText(t *testing.T) {
	e := &HostError{Code: wire.CodeDenied, Op: "keel:sql/v1.query", Message: "no", Detail: "42501"}
	if got := e.Error(); got != "keel:sql/v1.query: "+wire.CodeDenied.String()+" (42501): no" {
		t.Errorf("%q", got)
	}
	w := wrapErr("keel: DB.Query", e)
	if !errors.Is(w, ErrDenied) || w.Error() != "keel: DB.Query: "+e.Error() {
		t.Errorf("wrapped: %v", w)
	}
}
