package testkit

import (
	"path/filepath"
	"testing"
)

// TestBuildKeyFollowsBuildEnv: the cached guest of a build with other flags is not
// the answer to this one's (a stale guest once made a benchmark's variants identical).
func TestBuildKeyFollowsBuildEnv(t *testing.T) {
	root := Root()
	dir := filepath.Join(root, "plugins", "example")
	key := func() string {
		t.Helper()
		k, err := buildKey(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	for _, k := range buildEnv {
		t.Setenv(k, "")
	}
	base := key()
	if again := key(); again != base {
		t.Fatalf("the key is not stable: %s then %s", base, again)
	}
	for _, k := range buildEnv {
		t.Run(k, func(t *testing.T) {
			t.Setenv(k, "-some-value")
			if got := key(); got == base {
				t.Fatalf("%s changed nothing in the key %s", k, got)
			}
		})
	}
	if other, err := buildKey(root, filepath.Join(root, "plugins", "audit")); err != nil || other == base {
		t.Fatalf("another package's key: %s, %v (example's %s)", other, err, base)
	}
}
