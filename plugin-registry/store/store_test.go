package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keelhq/keel/bridges/postgres/pgtest"
	"github.com/keelhq/keel/plugin-registry/bundle"
)

// plugin returns name's entry in List.
func plugin(t testing.TB, s *Store, name string) Plugin {
	t.Helper()
	list, err := s.List(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("plugin %s not in List", name)
	return Plugin{}
}

// states returns the state of each of name's versions.
func states(t testing.TB, s *Store, name string) map[string]State {
	t.Helper()
	m := map[string]State{}
	for _, v := range plugin(t, s, name).Versions {
		m[v.Version] = v.State
	}
	return m
}

func history(t testing.TB, s *Store, name string) []Event {
	t.Helper()
	events, err := s.History(testCtx(t), name, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// detail decodes an event's detail.
func detail(t testing.TB, e Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(e.Detail, &m); err != nil {
		t.Fatalf("event %d detail %s: %v", e.ID, e.Detail, err)
	}
	return m
}

func countActions(events []Event, a Action) int {
	n := 0
	for _, e := range events {
		if e.Action == a {
			n++
		}
	}
	return n
}

func TestPutGetList(t *testing.T) {
	s := openStore(t)
	ctx := testCtx(t)
	name := pluginName()
	b1, raw1 := makeBundle(t, name, "1.0.0", "")
	before := time.Now()
	v1, err := s.Put(ctx, b1, raw1, "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := Version{Name: name, Version: "1.0.0", Digest: b1.Digest(), Signer: bundle.KeyID(testPub),
		Size: int64(len(raw1)), UploadedBy: "alice", State: StateUploaded}
	got := v1
	got.Manifest, got.UploadedAt = nil, time.Time{}
	if !equalVersion(got, want) {
		t.Fatalf("Put returned\n %+v\nwant\n %+v", got, want)
	}
	if v1.UploadedAt.Before(before.Add(-time.Minute)) || v1.UploadedAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("UploadedAt = %v, want about now", v1.UploadedAt)
	}
	var man struct{ Name, Version, Description string }
	if err := json.Unmarshal(v1.Manifest, &man); err != nil || man.Name != name || man.Version != "1.0.0" {
		t.Fatalf("Manifest = %s (%v)", v1.Manifest, err)
	}

	// Get returns the bytes as uploaded, and they verify again with the trusted key.
	gv, graw, err := s.Get(ctx, name, "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if !equalVersion(gv, v1) || !bytes.Equal(graw, raw1) {
		t.Fatalf("Get = %+v, %d bytes; want %+v, the %d uploaded bytes", gv, len(graw), v1, len(raw1))
	}
	rb, err := bundle.Read(bytes.NewReader(graw), bundle.ReadOptions{TrustedKeys: []ed25519.PublicKey{testPub}})
	if err != nil || rb.Digest() != v1.Digest || !bytes.Equal(rb.Wasm(), tinyWasm) {
		t.Fatalf("stored bundle reads back as %v, %v", rb, err)
	}

	time.Sleep(5 * time.Millisecond) // distinct upload times, so "newest first" is observable
	b2, raw2 := makeBundle(t, name, "1.1.0", "")
	v2, err := s.Put(ctx, b2, raw2, "bob")
	if err != nil {
		t.Fatal(err)
	}
	p := plugin(t, s, name)
	if p.Active != nil {
		t.Errorf("Active = %+v before any activation", p.Active)
	}
	if len(p.Versions) != 2 || !equalVersion(p.Versions[0], v2) || !equalVersion(p.Versions[1], v1) {
		t.Fatalf("List versions = %+v, want [1.1.0 1.0.0]", p.Versions)
	}

	if _, _, err := s.Get(ctx, name, "9.9.9"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), name+"@9.9.9") {
		t.Errorf("Get of a missing version = %v, want ErrNotFound naming it", err)
	}
	events := history(t, s, name)
	if len(events) != 2 || events[0].Action != ActionUpload || events[0].Version != "1.1.0" || events[0].Actor != "bob" ||
		events[1].Version != "1.0.0" || detail(t, events[1])["digest"] != b1.Digest() {
		t.Fatalf("history = %+v", events)
	}
}

func equalVersion(a, b Version) bool {
	return a.Name == b.Name && a.Version == b.Version && a.Digest == b.Digest && a.Signer == b.Signer &&
		bytes.Equal(a.Manifest, b.Manifest) && a.Size == b.Size && a.UploadedBy == b.UploadedBy &&
		a.UploadedAt.Equal(b.UploadedAt) && a.State == b.State && a.LastError == b.LastError
}

func TestPutIdempotentAndConflict(t *testing.T) {
	s := openStore(t)
	ctx := testCtx(t)
	name := pluginName()
	b, raw := makeBundle(t, name, "1.0.0", "first")
	v, err := s.Put(ctx, b, raw, "alice")
	if err != nil {
		t.Fatal(err)
	}

	// The same content again, even by someone else, returns the stored row and records nothing.
	again, err := s.Put(ctx, b, raw, "bob")
	if err != nil {
		t.Fatalf("re-put: %v", err)
	}
	if !equalVersion(again, v) {
		t.Fatalf("re-put returned %+v, want the stored %+v", again, v)
	}

	// Different content under the same name and version is refused, and nothing changes.
	other, otherRaw := makeBundle(t, name, "1.0.0", "second")
	if other.Digest() == b.Digest() {
		t.Fatal("test bundles share a digest")
	}
	if _, err := s.Put(ctx, other, otherRaw, "mallory"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), name+"@1.0.0") {
		t.Fatalf("conflicting put = %v, want ErrConflict naming the version", err)
	}
	gv, graw, err := s.Get(ctx, name, "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if !equalVersion(gv, v) || !bytes.Equal(graw, raw) {
		t.Fatalf("after the refused put the store holds %+v (%d bytes), want %+v", gv, len(graw), v)
	}
	if events := history(t, s, name); len(events) != 1 || events[0].Actor != "alice" {
		t.Fatalf("history = %+v, want the one upload", events)
	}

	// Raw bytes that are not the bundle are refused before anything is stored.
	b2, _ := makeBundle(t, name, "2.0.0", "")
	if _, err := s.Put(ctx, b2, raw, "alice"); err == nil || !strings.Contains(err.Error(), "raw bytes") {
		t.Fatalf("put with another bundle's bytes = %v, want a refusal", err)
	}
	if _, _, err := s.Get(ctx, name, "2.0.0"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after a refused put, Get = %v", err)
	}
}

// TestConcurrentPut uploads one bundle from several hosts at once: all succeed with the same row
// and one upload is recorded.
func TestConcurrentPut(t *testing.T) {
	hosts := []*Store{openStore(t), openStore(t)}
	ctx := testCtx(t)
	name := pluginName()
	b, raw := makeBundle(t, name, "1.0.0", "")
	const n = 6
	got := make([]Version, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = hosts[i%2].Put(ctx, b, raw, fmt.Sprintf("uploader-%d", i))
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("put %d: %v", i, errs[i])
		}
		if !equalVersion(got[i], got[0]) {
			t.Fatalf("put %d returned %+v, put 0 %+v", i, got[i], got[0])
		}
	}
	if events := history(t, hosts[0], name); len(events) != 1 || events[0].Actor != got[0].UploadedBy {
		t.Fatalf("history = %+v, want one upload by %s", events, got[0].UploadedBy)
	}
}

// TestLifecycle walks one plugin through activation, a second activation, rollback, refused and
// allowed deletes, failure, deactivation and re-activation, checking the active row, version states,
// history and the notification seen by another store (another host) on each step.
func TestLifecycle(t *testing.T) {
	s := openStore(t)
	names := watch(t, openStore(t))
	receive(t, names, "", 5*time.Second) // listening
	ctx := testCtx(t)
	name := pluginName()
	put(t, s, name, "1.0.0")
	put(t, s, name, "2.0.0")

	// Activate v1.
	a, err := s.Activate(ctx, name, "1.0.0", "alice")
	if err != nil {
		t.Fatal(err)
	}
	receive(t, names, name, 2*time.Second)
	if a.Version != "1.0.0" || a.Generation != 1 || a.PreviousVersion != "" || a.UpdatedBy != "alice" || a.Digest == "" {
		t.Fatalf("Activate = %+v", a)
	}
	checkActive(t, s, a)
	checkStates(t, s, name, map[string]State{"1.0.0": StateActive, "2.0.0": StateUploaded})
	if e := history(t, s, name)[0]; e.Action != ActionActivate || e.Version != "1.0.0" || e.Actor != "alice" ||
		detail(t, e)["generation"] != 1.0 {
		t.Fatalf("last event = %+v", e)
	}

	// Activate v2: v1 becomes the previous version.
	a, err = s.Activate(ctx, name, "2.0.0", "bob")
	if err != nil {
		t.Fatal(err)
	}
	receive(t, names, name, 2*time.Second)
	if a.Version != "2.0.0" || a.PreviousVersion != "1.0.0" || a.Generation != 2 {
		t.Fatalf("second Activate = %+v", a)
	}
	checkActive(t, s, a)
	checkStates(t, s, name, map[string]State{"1.0.0": StateInactive, "2.0.0": StateActive})

	// Roll back: v1 again, and v2 is now the previous one.
	a, err = s.Rollback(ctx, name, "carol")
	if err != nil {
		t.Fatal(err)
	}
	receive(t, names, name, 2*time.Second)
	if a.Version != "1.0.0" || a.PreviousVersion != "2.0.0" || a.Generation != 3 || a.UpdatedBy != "carol" {
		t.Fatalf("Rollback = %+v", a)
	}
	checkActive(t, s, a)
	checkStates(t, s, name, map[string]State{"1.0.0": StateActive, "2.0.0": StateInactive})
	if e := history(t, s, name)[0]; e.Action != ActionRollback || e.Version != "1.0.0" || detail(t, e)["from"] != "2.0.0" {
		t.Fatalf("last event = %+v", e)
	}

	// The active version cannot be deleted, and the refusal changes nothing.
	if err := s.Delete(ctx, name, "1.0.0", "dave"); !errors.Is(err, ErrActive) {
		t.Fatalf("Delete of the active version = %v, want ErrActive", err)
	}
	if _, _, err := s.Get(ctx, name, "1.0.0"); err != nil {
		t.Fatalf("active version gone after a refused delete: %v", err)
	}
	checkActive(t, s, a)

	// A failure report marks the version without touching the active set.
	if err := s.MarkFailed(ctx, name, "2.0.0", "compile: bad\x00 module"); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := s.Get(ctx, name, "2.0.0"); v.State != StateFailed || v.LastError != "compile: bad module" {
		t.Fatalf("after MarkFailed: state %s, last error %q", v.State, v.LastError)
	}
	if e := history(t, s, name)[0]; e.Action != ActionFail || e.Actor != s.host || e.Version != "2.0.0" {
		t.Fatalf("last event = %+v", e)
	}
	checkActive(t, s, a)

	// Deleting the rollback target leaves no previous version.
	if err := s.Delete(ctx, name, "2.0.0", "dave"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rollback(ctx, name, "carol"); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("Rollback after deleting the previous version = %v, want ErrNoPrevious", err)
	}
	a.PreviousVersion = ""
	checkActive(t, s, a)

	// Deactivate removes the row and notifies; the next activation continues the generation.
	if err := s.Deactivate(ctx, name, "erin"); err != nil {
		t.Fatal(err)
	}
	receive(t, names, name, 2*time.Second)
	active, err := s.Active(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := active[name]; ok {
		t.Fatalf("after Deactivate the active set still has %+v", got)
	}
	checkStates(t, s, name, map[string]State{"1.0.0": StateInactive})
	if p := plugin(t, s, name); p.Active != nil {
		t.Fatalf("List still shows %+v active", p.Active)
	}
	if e := history(t, s, name)[0]; e.Action != ActionDeactivate || e.Version != "1.0.0" || detail(t, e)["generation"] != 4.0 {
		t.Fatalf("last event = %+v", e)
	}
	a, err = s.Activate(ctx, name, "1.0.0", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if a.Generation != 5 || a.PreviousVersion != "" {
		t.Fatalf("Activate after Deactivate = %+v, want generation 5 and no previous", a)
	}
	receive(t, names, name, 2*time.Second)

	if n := countActions(history(t, s, name), ActionDelete); n != 1 {
		t.Fatalf("%d delete events, want 1", n)
	}
}

func checkActive(t testing.TB, s *Store, want Active) {
	t.Helper()
	active, err := s.Active(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := active[want.Name]
	if !ok || got.Version != want.Version || got.Digest != want.Digest || got.Generation != want.Generation ||
		got.PreviousVersion != want.PreviousVersion || got.UpdatedBy != want.UpdatedBy {
		t.Fatalf("active row = %+v (present %v), want %+v", got, ok, want)
	}
	if p := plugin(t, s, want.Name); p.Active == nil || !sameActive(*p.Active, got) {
		t.Fatalf("List shows active %+v, Active() %+v", p.Active, got)
	}
}

func sameActive(a, b Active) bool {
	return a.Name == b.Name && a.Version == b.Version && a.Digest == b.Digest && a.Generation == b.Generation &&
		a.PreviousVersion == b.PreviousVersion && a.UpdatedBy == b.UpdatedBy && a.UpdatedAt.Equal(b.UpdatedAt)
}

func checkStates(t testing.TB, s *Store, name string, want map[string]State) {
	t.Helper()
	if got := states(t, s, name); !maps.Equal(got, want) {
		t.Fatalf("states = %v, want %v", got, want)
	}
}

func TestRefusals(t *testing.T) {
	s := openStore(t)
	ctx := testCtx(t)
	name := pluginName()
	put(t, s, name, "1.0.0")
	tests := []struct {
		what string
		call func() error
		want error
	}{
		{"activate a missing version", func() error { _, err := s.Activate(ctx, name, "9.0.0", "a"); return err }, ErrNotFound},
		{"activate a missing plugin", func() error { _, err := s.Activate(ctx, "nope", "1.0.0", "a"); return err }, ErrNotFound},
		{"rollback with nothing active", func() error { _, err := s.Rollback(ctx, name, "a"); return err }, ErrNoPrevious},
		{"deactivate with nothing active", func() error { return s.Deactivate(ctx, name, "a") }, ErrNotFound},
		{"delete a missing version", func() error { return s.Delete(ctx, name, "9.0.0", "a") }, ErrNotFound},
		{"mark a missing version failed", func() error { return s.MarkFailed(ctx, name, "9.0.0", "x") }, ErrNotFound},
		{"activate without an actor", func() error { _, err := s.Activate(ctx, name, "1.0.0", ""); return err }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.what, func(t *testing.T) {
			err := tt.call()
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "registry: ") {
				t.Errorf("err %q lacks the registry: prefix", err)
			}
		})
	}
	if n := len(history(t, s, name)); n != 1 {
		t.Fatalf("refusals left %d events, want just the upload", n)
	}
	// Rollback right after a first activation has nowhere to go either.
	if _, err := s.Activate(ctx, name, "1.0.0", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rollback(ctx, name, "a"); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("rollback after the first activation = %v, want ErrNoPrevious", err)
	}
}

// TestConcurrentActivate races ten activations of alternating versions on one plugin, from two
// stores (two hosts): each must apply once, in some order, with no lost update. It runs from an
// existing active row and from none, where there is no row to lock.
func TestConcurrentActivate(t *testing.T) {
	hosts := []*Store{openStore(t), openStore(t)}
	for _, tt := range []struct {
		what       string
		activeFrom bool
	}{
		{"from an active version", true},
		{"from no active version", false},
	} {
		t.Run(tt.what, func(t *testing.T) {
			s := hosts[0]
			ctx := testCtx(t)
			name := pluginName()
			put(t, s, name, "1.0.0")
			put(t, s, name, "2.0.0")
			var initial Active
			setup := 0
			if tt.activeFrom {
				var err error
				if initial, err = s.Activate(ctx, name, "1.0.0", "setup"); err != nil {
					t.Fatal(err)
				}
				setup = 1
			}
			raceActivations(t, hosts, name, initial.Generation, setup)
		})
	}
}

func raceActivations(t *testing.T, hosts []*Store, name string, initial int64, setup int) {
	const n = 10
	ctx := testCtx(t)
	s := hosts[0]
	var wg sync.WaitGroup
	results := make([]Active, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = hosts[i%len(hosts)].Activate(ctx, name, fmt.Sprintf("%d.0.0", i%2+1), fmt.Sprintf("racer-%d", i))
		}()
	}
	close(start)
	wg.Wait()
	seen := map[int64]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("activation %d: %v", i, err)
		}
		seen[results[i].Generation] = true
	}
	for g := initial + 1; g <= initial+n; g++ {
		if !seen[g] {
			t.Fatalf("no activation got generation %d; got %v", g, seen)
		}
	}

	final, err := s.Active(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := final[name]
	if last.Generation != initial+n {
		t.Fatalf("final generation %d, want %d", last.Generation, initial+n)
	}
	// The winner is whichever ran last: its result is the row.
	var winner Active
	for _, r := range results {
		if r.Generation == last.Generation {
			winner = r
		}
	}
	if !sameActive(winner, last) {
		t.Fatalf("active row %+v, last activation %+v", last, winner)
	}
	events := history(t, s, name)
	if got := countActions(events, ActionActivate); got != n+setup {
		t.Fatalf("%d activation events, want %d", got, n+setup)
	}
	gens := map[string]bool{}
	for _, e := range events {
		if e.Action == ActionActivate {
			gens[fmt.Sprint(detail(t, e)["generation"])] = true
		}
	}
	if len(gens) != n+setup {
		t.Fatalf("activation events carry %d distinct generations, want %d", len(gens), n+setup)
	}
	active := 0
	for v, st := range states(t, s, name) {
		if st == StateActive {
			active++
			if v != last.Version {
				t.Errorf("version %s is marked active, the row says %s", v, last.Version)
			}
		}
	}
	if active != 1 {
		t.Fatalf("%d versions marked active, want 1", active)
	}
}

// watchPIDs returns the backend pids of Watch connections to the test database.
func watchPIDs(t testing.TB, s *Store) []int32 {
	t.Helper()
	rows, err := s.pool.Query(testCtx(t), `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1 ORDER BY pid`, watchAppName)
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

func TestWatchReconnects(t *testing.T) {
	s := openStore(t)
	names := watch(t, openStore(t))
	receive(t, names, "", 5*time.Second)
	ctx := testCtx(t)
	name := pluginName()
	put(t, s, name, "1.0.0")

	var pid int32
	eventually(t, 5*time.Second, "exactly one watch connection", func() bool {
		pids := watchPIDs(t, s)
		if len(pids) == 1 {
			pid = pids[0]
		}
		return len(pids) == 1
	})
	var ok bool
	if err := s.pool.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}
	receive(t, names, "", 5*time.Second) // listening again
	eventually(t, 5*time.Second, "a new watch connection", func() bool {
		pids := watchPIDs(t, s)
		return len(pids) == 1 && pids[0] != pid
	})

	if _, err := s.Activate(ctx, name, "1.0.0", "alice"); err != nil {
		t.Fatal(err)
	}
	receive(t, names, name, 2*time.Second)
}

// TestWatchKeepalive checks that a quiet connection is pinged, not dropped, and that Close ends
// Watch.
func TestWatchKeepalive(t *testing.T) {
	old := watchKeepalive
	watchKeepalive = 50 * time.Millisecond
	t.Cleanup(func() { watchKeepalive = old })

	s := openStore(t)
	w, err := Open(testCtx(t), testURL)
	if err != nil {
		t.Fatal(err)
	}
	names := make(chan string, 16)
	done := make(chan error, 1)
	go func() { done <- w.Watch(context.Background(), func(n string) { names <- n }) }()
	receive(t, names, "", 5*time.Second)
	time.Sleep(300 * time.Millisecond) // several keepalive rounds
	name := pluginName()
	put(t, s, name, "1.0.0")
	if _, err := s.Activate(testCtx(t), name, "1.0.0", "alice"); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-names:
		if got != name {
			t.Fatalf("after quiet keepalives Watch reported %q, want %q (a reconnect reports \"\" first)", got, name)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no notification within 2s")
	}

	w.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch after Close = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch still running 5s after Close")
	}
}

func TestOpenRefusals(t *testing.T) {
	ctx := testCtx(t)
	if _, err := Open(ctx, "postgres://u:s3cret@[::1"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Open with a bad URL = %v, want an error without the password", err)
	}
	d, err := pgtest.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Drop(context.Background(), "") //nolint:errcheck // best effort
	if _, err := Open(ctx, d.URL()); err == nil || !strings.Contains(err.Error(), "host migrations") {
		t.Fatalf("Open on an unmigrated database = %v, want a hint to migrate", err)
	}
}

// TestNoPublicAccess checks the migration's REVOKE: roles other than the host's (plugin roles get
// their privileges through PUBLIC) can read or change none of the registry.
func TestNoPublicAccess(t *testing.T) {
	s := openStore(t)
	for _, obj := range []string{"keel_host.plugin_versions", "keel_host.plugin_active", "keel_host.plugin_events"} {
		var granted bool
		err := s.pool.QueryRow(testCtx(t), `SELECT has_table_privilege('public', $1, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')`, obj).Scan(&granted)
		if err != nil || granted {
			t.Errorf("PUBLIC privileges on %s: %v, %v", obj, granted, err)
		}
	}
	var seq bool
	if err := s.pool.QueryRow(testCtx(t), `SELECT has_sequence_privilege('public', 'keel_host.plugin_events_id_seq', 'USAGE, SELECT, UPDATE')`).Scan(&seq); err != nil || seq {
		t.Errorf("PUBLIC privileges on the events sequence: %v, %v", seq, err)
	}
}
