// Package preempt instruments a wasm module so that the host can stop it at any loop.
//
// wazero can enforce termination itself (RuntimeConfig.WithCloseOnContextDone), but in
// v1.12 that leaves native code on every loop back-edge, about 35 ns each; the Go wasm
// backend turns every function entry and loop iteration into a back-edge, so a Go
// guest ran 5 to 10 times slower with it. Without any check, a spinning guest can
// neither be stopped nor be paused by the host's garbage collector, which stalls the
// whole process.
//
// Instrument inserts, at the head of every loop, a decrement of a counter global; when
// the counter reaches zero it is reset and the imported host function
// keel:env/v1.tick is called. The tick checks the call's deadline and aborts the call
// when it has passed, and, being a call into Go, gives the host's scheduler and
// garbage collector a safe point. The inline check costs a few instructions; the tick
// runs once per Interval back-edges.
package preempt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Import names of the tick function.
const (
	TickModule = "keel:env/v1"
	TickName   = "tick"
)

// DefaultInterval is the number of loop iterations between ticks.
const DefaultInterval = 1000

// ErrMalformed is wrapped by every error about the input module.
var ErrMalformed = errors.New("preempt: malformed wasm module")

// Section ids.
const (
	secCustom   = 0
	secType     = 1
	secImport   = 2
	secFunction = 3
	secGlobal   = 6
	secExport   = 7
	secStart    = 8
	secElement  = 9
	secCode     = 10
)

type section struct {
	id      byte
	content []byte
}

// Instrument returns an instrumented copy of the module. It fails on modules it
// cannot parse; it never modifies its input.
func Instrument(wasm []byte, interval int32) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil { // a bug in the reader must not take the host down
			out, err = nil, fmt.Errorf("%w: %v", ErrMalformed, r)
		}
	}()
	if interval < 1 {
		return nil, fmt.Errorf("preempt: interval %d must be positive", interval)
	}
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) || binary.LittleEndian.Uint32(wasm[4:8]) != 1 {
		return nil, fmt.Errorf("%w: not a wasm version 1 binary", ErrMalformed)
	}
	var secs []section
	r := &reader{b: wasm[8:]}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		content := r.bytes(int(n))
		if r.err != nil {
			return nil, r.err
		}
		secs = append(secs, section{id, content})
	}
	m := &module{secs: secs, interval: interval}
	if err := m.rewrite(); err != nil {
		return nil, err
	}
	buf := append([]byte(nil), wasm[:8]...)
	for _, s := range m.secs {
		buf = append(buf, s.id)
		buf = appendU32(buf, uint32(len(s.content)))
		buf = append(buf, s.content...)
	}
	return buf, nil
}

type module struct {
	secs     []section
	interval int32

	typeIdx    uint32 // type index of () -> ()
	numFuncImp uint32 // function imports before instrumenting
	numGlobImp uint32
	tickIdx    uint32 // function index of tick
	shift      bool   // tick was added: defined function indices move up by one
	counterIdx uint32 // global index of the counter
}

func (m *module) find(id byte) int {
	for i, s := range m.secs {
		if s.id == id {
			return i
		}
	}
	return -1
}

// insert places a new section before the first section whose id is greater than id
// (custom sections aside), keeping the required order.
func (m *module) insert(s section) {
	for i, t := range m.secs {
		if t.id != secCustom && t.id > s.id {
			m.secs = append(m.secs[:i], append([]section{s}, m.secs[i:]...)...)
			return
		}
	}
	m.secs = append(m.secs, s)
}

// fidx maps an original function index to its index after instrumenting.
func (m *module) fidx(i uint32) uint32 {
	if m.shift && i >= m.numFuncImp {
		return i + 1
	}
	return i
}

func (m *module) rewrite() error {
	if err := m.types(); err != nil {
		return err
	}
	if err := m.imports(); err != nil {
		return err
	}
	if err := m.globals(); err != nil {
		return err
	}
	steps := []struct {
		id byte
		fn func([]byte) ([]byte, error)
	}{
		{secExport, m.exports}, {secStart, m.start}, {secElement, m.elements}, {secCode, m.code},
	}
	for _, st := range steps {
		if i := m.find(st.id); i >= 0 {
			c, err := st.fn(m.secs[i].content)
			if err != nil {
				return err
			}
			m.secs[i].content = c
		}
	}
	// Custom sections: DWARF refers to code offsets that moved, and names refer to
	// function indices that moved; drop the first, fix the second.
	kept := m.secs[:0]
	for _, s := range m.secs {
		if s.id == secCustom {
			r := &reader{b: s.content}
			name := string(r.name())
			if r.err != nil {
				return r.err
			}
			if len(name) >= 7 && name[:7] == ".debug_" {
				continue
			}
			if name == "name" && m.shift {
				c, err := m.names(s.content[len(s.content)-len(r.b):])
				if err != nil {
					continue // names are debugging aid only; drop what we cannot fix
				}
				s.content = append(appendName(nil, []byte("name")), c...)
			}
		}
		kept = append(kept, s)
	}
	m.secs = kept
	return nil
}

// types finds or adds the function type () -> ().
func (m *module) types() error {
	i := m.find(secType)
	if i < 0 {
		m.typeIdx = 0
		m.insert(section{secType, []byte{1, 0x60, 0, 0}})
		return nil
	}
	r := &reader{b: m.secs[i].content}
	n := r.u32()
	entries := r.b
	for t := uint32(0); t < n && r.err == nil; t++ {
		if r.byte() != 0x60 {
			return fmt.Errorf("%w: type %d is not a function type", ErrMalformed, t)
		}
		np := r.u32()
		r.bytes(int(np))
		nr := r.u32()
		r.bytes(int(nr))
		if np == 0 && nr == 0 && r.err == nil {
			m.typeIdx = t
			return nil
		}
	}
	if r.err != nil {
		return r.err
	}
	m.typeIdx = n
	c := appendU32(nil, n+1)
	c = append(c, entries...)
	c = append(c, 0x60, 0, 0)
	m.secs[i].content = c
	return nil
}

// imports counts function and global imports and adds the tick import if missing.
func (m *module) imports() error {
	i := m.find(secImport)
	var entries []byte
	var n uint32
	found := false
	if i >= 0 {
		r := &reader{b: m.secs[i].content}
		n = r.u32()
		start := len(m.secs[i].content) - len(r.b)
		for k := uint32(0); k < n && r.err == nil; k++ {
			mod, name := r.name(), r.name()
			switch kind := r.byte(); kind {
			case 0:
				r.u32()
				if string(mod) == TickModule && string(name) == TickName {
					// Already imported (its type, () -> (), is checked by validation).
					m.tickIdx, found = m.numFuncImp, true
				}
				m.numFuncImp++
			case 1:
				r.tableType()
			case 2:
				r.limits()
			case 3:
				r.byte()
				r.byte()
				m.numGlobImp++
			default:
				return fmt.Errorf("%w: import kind %d", ErrMalformed, kind)
			}
		}
		if r.err != nil {
			return r.err
		}
		if found {
			return nil
		}
		entries = m.secs[i].content[start:]
	}
	c := appendU32(nil, n+1)
	c = append(c, entries...)
	c = appendName(c, []byte(TickModule))
	c = appendName(c, []byte(TickName))
	c = append(c, 0)
	c = appendU32(c, m.typeIdx)
	if i >= 0 {
		m.secs[i].content = c
	} else {
		m.insert(section{secImport, c})
	}
	m.tickIdx, m.shift = m.numFuncImp, true
	return nil
}

// globals appends the counter global, fixing ref.func in existing initialisers.
func (m *module) globals() error {
	i := m.find(secGlobal)
	var n uint32
	var body []byte
	if i >= 0 {
		r := &reader{b: m.secs[i].content}
		n = r.u32()
		for k := uint32(0); k < n && r.err == nil; k++ {
			t, mut := r.byte(), r.byte()
			body = append(body, t, mut)
			var err error
			if body, err = m.constExpr(r, body); err != nil {
				return err
			}
		}
		if r.err != nil {
			return r.err
		}
	}
	m.counterIdx = m.numGlobImp + n
	c := appendU32(nil, n+1)
	c = append(c, body...)
	c = append(c, 0x7f, 1, 0x41)
	c = appendS32(c, m.interval)
	c = append(c, 0x0b)
	if i >= 0 {
		m.secs[i].content = c
	} else {
		m.insert(section{secGlobal, c})
	}
	return nil
}

// constExpr copies a constant expression up to and including its end, shifting
// ref.func.
func (m *module) constExpr(r *reader, out []byte) ([]byte, error) {
	for r.err == nil {
		op := r.byte()
		switch op {
		case 0x0b:
			return append(out, op), nil
		case 0x41:
			out = append(out, op)
			out = appendS64(out, r.s64())
		case 0x42:
			out = append(out, op)
			out = appendS64(out, r.s64())
		case 0x43:
			out = append(append(out, op), r.bytes(4)...)
		case 0x44:
			out = append(append(out, op), r.bytes(8)...)
		case 0x23:
			out = appendU32(append(out, op), r.u32())
		case 0xd0:
			out = append(out, op, r.byte())
		case 0xd2:
			out = appendU32(append(out, op), m.fidx(r.u32()))
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constant arithmetic
			out = append(out, op)
		default:
			return nil, fmt.Errorf("%w: opcode 0x%02x in a constant expression", ErrMalformed, op)
		}
	}
	return nil, r.err
}

func (m *module) exports(c []byte) ([]byte, error) {
	r := &reader{b: c}
	n := r.u32()
	out := appendU32(nil, n)
	for k := uint32(0); k < n && r.err == nil; k++ {
		out = appendName(out, r.name())
		kind, idx := r.byte(), r.u32()
		if kind == 0 {
			idx = m.fidx(idx)
		}
		out = appendU32(append(out, kind), idx)
	}
	return out, r.err
}

func (m *module) start(c []byte) ([]byte, error) {
	r := &reader{b: c}
	idx := r.u32()
	return appendU32(nil, m.fidx(idx)), r.err
}

func (m *module) elements(c []byte) ([]byte, error) {
	r := &reader{b: c}
	n := r.u32()
	out := appendU32(nil, n)
	var err error
	for k := uint32(0); k < n && r.err == nil; k++ {
		flags := r.u32()
		out = appendU32(out, flags)
		if flags > 7 {
			return nil, fmt.Errorf("%w: element segment flags %d", ErrMalformed, flags)
		}
		if flags&2 != 0 && flags&1 == 0 { // explicit table index
			out = appendU32(out, r.u32())
		}
		if flags&1 == 0 { // active: offset expression
			if out, err = m.constExpr(r, out); err != nil {
				return nil, err
			}
		}
		if flags&3 != 0 { // elemkind or reftype
			out = append(out, r.byte())
		}
		cnt := r.u32()
		out = appendU32(out, cnt)
		for j := uint32(0); j < cnt && r.err == nil; j++ {
			if flags&4 == 0 {
				out = appendU32(out, m.fidx(r.u32()))
			} else if out, err = m.constExpr(r, out); err != nil {
				return nil, err
			}
		}
	}
	return out, r.err
}

// names fixes function indices in the "name" custom section (after its name field).
func (m *module) names(c []byte) ([]byte, error) {
	r := &reader{b: c}
	var out []byte
	for !r.done() && r.err == nil {
		id := r.byte()
		body := r.bytes(int(r.u32()))
		if r.err != nil {
			return nil, r.err
		}
		if id == 1 || id == 2 {
			br := &reader{b: body}
			n := br.u32()
			nb := appendU32(nil, n)
			for k := uint32(0); k < n && br.err == nil; k++ {
				nb = appendU32(nb, m.fidx(br.u32()))
				if id == 1 {
					nb = appendName(nb, br.name())
					continue
				}
				ln := br.u32()
				nb = appendU32(nb, ln)
				for j := uint32(0); j < ln && br.err == nil; j++ {
					nb = appendU32(nb, br.u32())
					nb = appendName(nb, br.name())
				}
			}
			if br.err != nil {
				return nil, br.err
			}
			body = nb
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	return out, r.err
}
