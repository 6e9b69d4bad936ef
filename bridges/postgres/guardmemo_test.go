package postgres

import (
	"errors"
	"strconv"
	"testing"

	"github.com/keelhq/keel/bridges/postgres/internal/sqlguard"
)

func TestGuardMemo(t *testing.T) {
	var g guardMemo
	for i := 0; i < 3; i++ { // the verdicts hold when they come from the memo
		if err := g.check(`SELECT 1`); err != nil {
			t.Fatalf("round %d: allowed statement refused: %v", i, err)
		}
		if err := g.check(`RESET ROLE`); !errors.Is(err, sqlguard.ErrDenied) {
			t.Fatalf("round %d: RESET ROLE = %v, want denied", i, err)
		}
	}
	for i := 0; i < 2*maxGuardMemo; i++ { // bounded: it starts over instead of growing
		g.check(`SELECT ` + strconv.Itoa(i))
	}
	if n := g.n.Load(); n > maxGuardMemo {
		t.Fatalf("memo holds %d texts, more than %d", n, maxGuardMemo)
	}
	if err := g.check(`SELECT set_config('role', 'postgres', false)`); !errors.Is(err, sqlguard.ErrDenied) {
		t.Fatalf("after starting over: %v, want denied", err)
	}
}
