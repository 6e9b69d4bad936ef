package preempt

import (
	"context"
	"errors"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/keelhq/keel/host/internal/testkit"
)

func sec(id byte, content []byte) []byte {
	return append(append([]byte{id}, appendU32(nil, uint32(len(content)))...), content...)
}

func vec(items ...[]byte) []byte {
	out := appendU32(nil, uint32(len(items)))
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

// spinModule builds a module with one import (env.log, to prove index shifting) and
// two functions: spin(n) loops n times; twice(n) calls spin(n) then spin(n) again and
// returns n, to prove calls still reach the right function after shifting.
func spinModule() []byte {
	types := vec(
		[]byte{0x60, 1, 0x7f, 0},       // 0: (i32) -> ()
		[]byte{0x60, 1, 0x7f, 1, 0x7f}, // 1: (i32) -> (i32)
	)
	imports := vec(append(append(appendName(nil, []byte("env")), appendName(nil, []byte("log"))...), 0, 0))
	funcs := vec([]byte{0}, []byte{1})
	exports := vec(
		append(appendName(nil, []byte("spin")), 0, 1),
		append(appendName(nil, []byte("twice")), 0, 2),
	)
	spin := []byte{0, // no locals
		0x03, 0x40, // loop
		0x20, 0, 0x41, 1, 0x6b, 0x22, 0, // local.get 0; i32.const 1; i32.sub; local.tee 0
		0x0d, 0, // br_if 0
		0x0b, // end loop
		0x0b} // end func
	twice := []byte{0,
		0x20, 0, 0x10, 1, // call spin (index 1)
		0x20, 0, 0x10, 1,
		0x20, 0, 0x10, 0, // call env.log (index 0)
		0x20, 0,
		0x0b}
	code := vec(append(appendU32(nil, uint32(len(spin))), spin...), append(appendU32(nil, uint32(len(twice))), twice...))
	m := []byte("\x00asm\x01\x00\x00\x00")
	m = append(m, sec(1, types)...)
	m = append(m, sec(2, imports)...)
	m = append(m, sec(3, funcs)...)
	m = append(m, sec(7, exports)...)
	m = append(m, sec(10, code)...)
	return m
}

func instantiate(t *testing.T, wasm []byte, ticks *int, logs *[]uint32) api.Module {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	_, err := rt.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithFunc(func(v uint32) { *logs = append(*logs, v) }).Export("log").Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.NewHostModuleBuilder(TickModule).NewFunctionBuilder().
		WithFunc(func() { *ticks++ }).Export(TickName).Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := rt.Instantiate(ctx, wasm)
	if err != nil {
		t.Fatalf("instrumented module does not instantiate: %v", err)
	}
	return mod
}

func TestTickEveryInterval(t *testing.T) {
	out, err := Instrument(spinModule(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ticks int
	var logs []uint32
	mod := instantiate(t, out, &ticks, &logs)
	if _, err := mod.ExportedFunction("spin").Call(context.Background(), 10000); err != nil {
		t.Fatal(err)
	}
	if ticks != 10 {
		t.Fatalf("10000 iterations at interval 1000 ticked %d times, want 10", ticks)
	}
	r, err := mod.ExportedFunction("twice").Call(context.Background(), 500)
	if err != nil || r[0] != 500 {
		t.Fatalf("twice: %v %v", r, err)
	}
	if len(logs) != 1 || logs[0] != 500 {
		t.Fatalf("call to the import was misdirected after shifting: %v", logs)
	}
	if ticks != 11 { // 10 + 1000 more iterations
		t.Fatalf("ticks after twice(500): %d, want 11", ticks)
	}
}

func TestInstrumentGoGuest(t *testing.T) {
	wasm, _ := testkit.Build(t, "plugins/example")
	out, err := Instrument(wasm, DefaultInterval)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, out)
	if err != nil {
		t.Fatalf("instrumented Go guest does not validate: %v", err)
	}
	found := false
	for _, f := range cm.ImportedFunctions() {
		if m, n, _ := f.Import(); m == TickModule && n == TickName {
			found = true
		}
	}
	if !found {
		t.Fatal("tick import missing")
	}
	if len(cm.ExportedFunctions()) == 0 {
		t.Fatal("exports lost")
	}
	// Instrumenting twice reuses the existing import.
	twice, err := Instrument(out, DefaultInterval)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.CompileModule(ctx, twice); err != nil {
		t.Fatalf("re-instrumented module does not validate: %v", err)
	}
}

func TestInstrumentRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":       nil,
		"not wasm":    []byte("hello world"),
		"version 2":   []byte("\x00asm\x02\x00\x00\x00"),
		"bad section": []byte("\x00asm\x01\x00\x00\x00\x0a\xff\xff\xff\xff\x0f"),
		"bad opcode":  append([]byte("\x00asm\x01\x00\x00\x00"), sec(10, vec(append(appendU32(nil, 3), 0, 0xfe, 0x0b)))...),
	} {
		if _, err := Instrument(b, 10); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
	if _, err := Instrument(spinModule(), 0); err == nil {
		t.Error("interval 0 accepted")
	}
}

func FuzzInstrument(f *testing.F) {
	f.Add(spinModule())
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := Instrument(b, 7)
		if err == nil && len(out) < 8 {
			t.Fatal("accepted input produced no module")
		}
	})
}
