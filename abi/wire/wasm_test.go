//go:build !wasip1

package wire

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// TestInWasm runs this package's tests compiled for wasip1 under wazero, the way the
// guest SDK runs this code: the decoders' unsafe parts (values boxed from shared
// arrays, strings aliasing a result) and the collector's view of them are held on the
// platform plugins actually use, not only natively.
func TestInWasm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a wasm test binary")
	}
	bin := filepath.Join(t.TempDir(), "wire.test.wasm")
	cmd := exec.Command("go", "test", "-c", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the tests for wasip1: %v\n%s", err, out)
	}
	wasm, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(true))
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	var out bytes.Buffer
	cfg := wazero.NewModuleConfig().WithStdout(&out).WithStderr(&out).
		WithSysNanotime().WithSysWalltime().WithSysNanosleep().
		WithArgs("wire.test", "-test.v").
		WithFSConfig(wazero.NewFSConfig().WithReadOnlyDirMount(dir, "/")) // testdata, for the fuzz seeds
	_, err = rt.InstantiateWithConfig(ctx, wasm, cfg)
	var exit *sys.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 0) {
		t.Fatalf("the tests failed in wasm: %v\n%s", err, out.Bytes())
	}
	if !bytes.Contains(out.Bytes(), []byte("\nPASS\n")) || !bytes.Contains(out.Bytes(), []byte("--- PASS: TestBoxedValuesSurviveCollection")) {
		t.Fatalf("the wasm test binary did not report its tests passing:\n%s", out.Bytes())
	}
}
