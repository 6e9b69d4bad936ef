package main

import (
	"os"
	"testing"

	"github.com/keelhq/keel/abi/manifest"
)

// TestPrefetchMatchesHandlers: each GET /<plural>/:id route declares the statement its
// handler runs, byte for byte. The SDK answers the handler from the host's prefetched
// rows only when the request is identical, so a drifted declaration would cost an
// extra query per request instead of saving one.
func TestPrefetchMatchesHandlers(t *testing.T) {
	f, err := os.Open("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := manifest.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, e := range entities {
		path := "/" + e.plural + "/:id"
		for _, r := range m.Routes {
			if r.Method != "GET" || r.Path != path {
				continue
			}
			if r.Prefetch == nil {
				t.Errorf("GET %s declares no prefetch", path)
				continue
			}
			found++
			if r.Prefetch.SQL != e.selectByID() || len(r.Prefetch.Params) != 1 || r.Prefetch.Params[0] != "id" {
				t.Errorf("GET %s prefetch = %q %v, want %q [id]", path, r.Prefetch.SQL, r.Prefetch.Params, e.selectByID())
			}
		}
	}
	if found != len(entities) {
		t.Errorf("%d of %d item routes declare a prefetch", found, len(entities))
	}
}
