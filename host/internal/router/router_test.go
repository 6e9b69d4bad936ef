package router

import (
	"reflect"
	"sort"
	"testing"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
)

var routes = []manifest.Route{
	{Method: "GET", Path: "/customers"},
	{Method: "POST", Path: "/customers"},
	{Method: "GET", Path: "/customers/:id"},
	{Method: "GET", Path: "/customers/search"},
	{Method: "PUT", Path: "/customers/:id"},
	{Method: "GET", Path: "/customers/:id/notes/:note"},
	{Method: "GET", Path: "/files/*"},
	{Method: "GET", Path: "/"},
}

func TestLookup(t *testing.T) {
	tab := New(routes)
	for _, tc := range []struct {
		method, path, route string
		params              []wire.KV
		allowed             []string
	}{
		{"GET", "/customers", "/customers", nil, nil},
		{"POST", "/customers", "/customers", nil, nil},
		{"GET", "/customers/42", "/customers/:id", []wire.KV{{Name: "id", Value: "42"}}, nil},
		{"GET", "/customers/search", "/customers/search", nil, nil},
		{"PUT", "/customers/search", "/customers/:id", []wire.KV{{Name: "id", Value: "search"}}, nil},
		{"GET", "/customers/7/notes/9", "/customers/:id/notes/:note", []wire.KV{{Name: "id", Value: "7"}, {Name: "note", Value: "9"}}, nil},
		{"GET", "/files/a/b/c.txt", "/files/*", []wire.KV{{Name: "*", Value: "a/b/c.txt"}}, nil},
		{"GET", "/files", "/files/*", []wire.KV{{Name: "*", Value: ""}}, nil},
		{"GET", "/", "/", nil, nil},
		{"DELETE", "/customers/42", "", nil, []string{"GET", "PUT"}},
		{"GET", "/nothing", "", nil, nil},
		{"GET", "/customers//notes/1", "", nil, nil},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			m, found, allowed := tab.Lookup(tc.method, tc.path)
			if tc.route == "" {
				sort.Strings(allowed)
				if found || !reflect.DeepEqual(allowed, tc.allowed) {
					t.Fatalf("found=%v route=%v allowed=%v, want not found with %v", found, m.Route, allowed, tc.allowed)
				}
				return
			}
			if !found || m.Route.Path != tc.route || !reflect.DeepEqual(m.Params, tc.params) {
				t.Fatalf("got %v %+v %v, want %s %v", found, m.Route, m.Params, tc.route, tc.params)
			}
		})
	}
}

func FuzzLookup(f *testing.F) {
	tab := New(routes)
	f.Add("GET", "/customers/1/notes/2")
	f.Add("PUT", "//files///")
	f.Fuzz(func(t *testing.T, method, path string) {
		m, found, _ := tab.Lookup(method, path)
		if found && (m.Route == nil || m.Route.Method != method) {
			t.Fatalf("inconsistent match %+v for %s %q", m, method, path)
		}
	})
}
