package runtime

import (
	"context"
	"testing"

	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/host/internal/testkit"
)

func echo(t *testing.T, p *Plugin, body string) {
	t.Helper()
	r, err := p.HTTP(context.Background(), &wire.HTTPRequest{Method: "POST", Path: "/echo", Route: "/echo", Body: []byte(body)}, nil)
	if err != nil || r.Status != 200 || string(r.Body) != body {
		t.Fatalf("%s@%s echo: %v %+v", p.manifest.Name, p.manifest.Version, err, r)
	}
}

// TestModuleKeptForReload: a version loaded again after its plugin closed (a rollback,
// a swap back) reuses the compiled module; versions with the same code run side by
// side in one runtime; another memory cap compiles its own; idle modules beyond
// keepIdleModules are closed, oldest first.
func TestModuleKeptForReload(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, nil)
	wasm, m := testkit.Build(t, "plugins/example")
	loadAs := func(version string, mib int, code []byte) (*Plugin, LoadStats) {
		t.Helper()
		mm := *m
		mm.Version, mm.Limits.MemoryMiB = version, mib
		if err := mm.Validate(); err != nil {
			t.Fatal(err)
		}
		p, st, err := e.Load(ctx, &mm, code)
		if err != nil {
			t.Fatal(err)
		}
		return p, st
	}

	v1, st := loadAs("1.0.0", 64, wasm)
	if st.Reused {
		t.Fatal("first load reported a reused module")
	}
	// Same code as another version, both live: one runtime, distinct instance names.
	v2, st := loadAs("2.0.0", 64, wasm)
	if !st.Reused || v2.module != v1.module {
		t.Fatalf("second version of the same code did not share the module (reused=%v)", st.Reused)
	}
	echo(t, v1, `"one"`)
	echo(t, v2, `"two"`)
	if err := v1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	echo(t, v2, `"still serving"`)
	if err := v2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Nobody uses it now; loading it again finds it.
	v1b, st := loadAs("1.0.0", 64, wasm)
	if !st.Reused {
		t.Fatal("reload after close recompiled the module")
	}
	echo(t, v1b, `"back"`)
	// Another memory cap is another runtime.
	big, st := loadAs("1.0.0", 128, wasm)
	if st.Reused || big.module == v1b.module {
		t.Fatal("a different memory cap reused the module")
	}
	echo(t, big, `"big"`)
	v1b.Close(ctx)
	big.Close(ctx)

	// Fill the idle list past its bound with distinct builds: the oldest is closed.
	first := v1b.module
	for i := 0; i < keepIdleModules; i++ {
		p, st := loadAs("3.0.0", 64, withSection(wasm, byte(i)))
		if st.Reused {
			t.Fatalf("distinct build %d reported reused", i)
		}
		p.Close(ctx)
	}
	e.mu.Lock()
	_, kept := e.modules[first.key]
	idle := len(e.idleModules)
	e.mu.Unlock()
	if kept || idle != keepIdleModules {
		t.Fatalf("after %d more idle modules: oldest kept=%v, idle=%d (want evicted, %d)", keepIdleModules, kept, idle, keepIdleModules)
	}
	if p, st := loadAs("1.0.0", 64, wasm); st.Reused {
		t.Fatal("evicted module reported reused")
	} else {
		echo(t, p, `"recompiled"`)
		p.Close(ctx)
	}
}

// withSection appends a one-byte custom section named by b: new bytes, same
// behaviour. (wazero 1.12 refuses a custom section with no content after its name.)
func withSection(wasm []byte, b byte) []byte {
	out := append([]byte(nil), wasm...)
	return append(out, 0, 3, 1, 'a'+b, 'x')
}
