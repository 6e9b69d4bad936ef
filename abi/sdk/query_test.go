package keel

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestParseQuery(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Values
		err  bool
	}{
		{"", Values{}, false},
		{"a=1&b=x+y&b=%2F", Values{"a": {"1"}, "b": {"x y", "/"}}, false},
		{"flag&&=v&k=", Values{"flag": {""}, "": {"v"}, "k": {""}}, false},
		{"a=1;b=2&c=3", Values{"c": {"3"}}, true},
		{"bad=%zz&good=%41", Values{"good": {"A"}}, true},
		{"trunc=%4", Values{}, true},
		{"%E2%82%AC=%e2%82%ac", Values{"€": {"€"}}, false},
	} {
		got, err := ParseQuery(tc.in)
		if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseQuery(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	v, _ := ParseQuery("x=1&x=2&e=")
	if v.Get("x") != "1" || v.Get("missing") != "" || !v.Has("e") || v.Has("missing") {
		t.Errorf("Get/Has on %v", v)
	}
}

func TestParseQueryLimit(t *testing.T) {
	q := strings.Repeat("a=1&", maxQueryParams) + "b=2"
	v, err := ParseQuery(q)
	if err == nil || len(v["a"]) != maxQueryParams || v.Has("b") {
		t.Fatalf("over the limit: %d values of a, b present %v, err %v", len(v["a"]), v.Has("b"), err)
	}
}

// FuzzParseQuery holds ParseQuery to net/url.ParseQuery's results, which it replaces
// in guests.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"a=1&b=2", "a+b=c%20d", "x;y=1", "%", "%zz=1", "=&=&", "k=%C3%A9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if strings.Count(q, "&") >= maxQueryParams {
			t.Skip()
		}
		got, err := ParseQuery(q)
		want, werr := url.ParseQuery(q)
		if (err != nil) != (werr != nil) {
			t.Fatalf("%q: error %v, net/url %v", q, err, werr)
		}
		if !reflect.DeepEqual(map[string][]string(got), map[string][]string(want)) {
			t.Fatalf("%q: %v, net/url %v", q, got, want)
		}
	})
}
