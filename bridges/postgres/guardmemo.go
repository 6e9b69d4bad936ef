package postgres

import (
	"sync"
	"sync/atomic"

	"github.com/keelhq/keel/bridges/postgres/internal/sqlguard"
)

// guardMemo remembers the SQL guard's verdict per statement text. The guard is a pure
// function of the text, and plugins send the same few dozen texts call after call; the
// tokenizer cost about 4 µs per statement on the authenticated read path (2-3 % of a
// request's CPU). The memo is bounded: past maxGuardMemo texts it starts over, so a
// plugin that builds texts dynamically costs the tokenizer again, never memory.
type guardMemo struct {
	m sync.Map // statement text -> verdict (*guardVerdict)
	n atomic.Int64
}

type guardVerdict struct{ err error }

const maxGuardMemo = 4096

// check returns sqlguard.CheckStatement(sql), from the memo when it has seen sql.
func (g *guardMemo) check(sql string) error {
	if v, ok := g.m.Load(sql); ok {
		return v.(*guardVerdict).err
	}
	err := sqlguard.CheckStatement(sql)
	if g.n.Add(1) > maxGuardMemo {
		g.m.Clear()
		g.n.Store(1)
	}
	g.m.Store(sql, &guardVerdict{err})
	return err
}
