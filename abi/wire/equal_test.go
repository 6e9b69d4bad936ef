package wire

import (
	"bytes"
	"testing"
)

func TestEqual(t *testing.T) {
	long := bytes.Repeat([]byte("permission.read,"), 40)
	for _, c := range []struct{ a, b []byte }{
		{nil, nil}, {nil, []byte{}}, {[]byte("a"), nil}, {[]byte("a"), []byte("a")}, {[]byte("a"), []byte("b")},
		{[]byte("12345678"), []byte("12345678")}, {[]byte("12345678"), []byte("12345679")},
		{[]byte("123456789"), []byte("123456789")}, {[]byte("123456789"), []byte("023456789")},
		{long, append([]byte(nil), long...)}, {long, append(append([]byte(nil), long[:len(long)-1]...), 'x')},
		{long, long[:len(long)-1]},
	} {
		if got, want := Equal(c.a, c.b), bytes.Equal(c.a, c.b); got != want {
			t.Errorf("Equal(%q, %q) = %v, want %v", c.a, c.b, got, want)
		}
	}
}

func FuzzEqual(f *testing.F) {
	f.Add([]byte("master-data.customer.read"), []byte("master-data.customer.read"))
	f.Add([]byte("0123456789abcdef"), []byte("0123456789abcdeF"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if got, want := Equal(a, b), bytes.Equal(a, b); got != want {
			t.Fatalf("Equal(%q, %q) = %v, want %v", a, b, got, want)
		}
		if !Equal(a, append([]byte(nil), a...)) {
			t.Fatalf("%q differs from its copy", a)
		}
	})
}
