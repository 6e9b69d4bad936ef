package preempt

import "fmt"

// code rewrites every function body: shifted call and ref.func indices, and the
// counter check after every loop header.
func (m *module) code(c []byte) ([]byte, error) {
	r := &reader{b: c}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(c)+len(c)/8), n)
	var body []byte
	for k := uint32(0); k < n && r.err == nil; k++ {
		size := r.u32()
		fr := &reader{b: r.bytes(int(size))}
		if r.err != nil {
			break
		}
		body = body[:0]
		// Locals: vec of (count, valtype).
		nl := fr.u32()
		body = appendU32(body, nl)
		for j := uint32(0); j < nl && fr.err == nil; j++ {
			body = appendU32(body, fr.u32())
			body = append(body, fr.byte())
		}
		var err error
		if body, err = m.instructions(fr, body); err != nil {
			return nil, fmt.Errorf("function %d: %w", k, err)
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	return out, r.err
}

// check is the sequence inserted after each loop header:
//
//	global.get $c; i32.const 1; i32.sub; global.set $c
//	global.get $c; i32.eqz
//	if
//	  i32.const interval; global.set $c
//	  call $tick
//	end
func (m *module) check(out []byte) []byte {
	out = appendU32(append(out, 0x23), m.counterIdx)
	out = append(out, 0x41, 1, 0x6b, 0x24)
	out = appendU32(out, m.counterIdx)
	out = appendU32(append(out, 0x23), m.counterIdx)
	out = append(out, 0x45, 0x04, 0x40, 0x41)
	out = appendS32(out, m.interval)
	out = appendU32(append(out, 0x24), m.counterIdx)
	out = appendU32(append(out, 0x10), m.tickIdx)
	return append(out, 0x0b)
}

// instructions copies a function's instructions, decoding each opcode's immediates so
// that only real opcodes are rewritten, never bytes inside immediates.
func (m *module) instructions(r *reader, out []byte) ([]byte, error) {
	for !r.done() {
		if r.err != nil {
			return nil, r.err
		}
		op := r.byte()
		out = append(out, op)
		switch {
		case op == 0x02 || op == 0x04: // block, if
			out = r.blockType(out)
		case op == 0x03: // loop
			out = r.blockType(out)
			out = m.check(out)
		case op == 0x0c || op == 0x0d: // br, br_if
			out = appendU32(out, r.u32())
		case op == 0x0e: // br_table
			cnt := r.u32()
			out = appendU32(out, cnt)
			for i := uint32(0); i <= cnt && r.err == nil; i++ {
				out = appendU32(out, r.u32())
			}
		case op == 0x10: // call
			out = appendU32(out, m.fidx(r.u32()))
		case op == 0x11: // call_indirect typeidx tableidx
			out = appendU32(out, r.u32())
			out = appendU32(out, r.u32())
		case op == 0x12: // return_call
			out = appendU32(out, m.fidx(r.u32()))
		case op == 0x13: // return_call_indirect
			out = appendU32(out, r.u32())
			out = appendU32(out, r.u32())
		case op == 0x1c: // select t*
			cnt := r.u32()
			out = appendU32(out, cnt)
			out = append(out, r.bytes(int(cnt))...)
		case op >= 0x20 && op <= 0x26: // local.get/set/tee, global.get/set, table.get/set
			out = appendU32(out, r.u32())
		case op >= 0x28 && op <= 0x3e: // loads and stores: memarg
			out = r.memarg(out)
		case op == 0x3f || op == 0x40: // memory.size, memory.grow: memory index
			out = appendU32(out, r.u32())
		case op == 0x41: // i32.const
			out = appendS64(out, r.s64())
		case op == 0x42: // i64.const
			out = appendS64(out, r.s64())
		case op == 0x43:
			out = append(out, r.bytes(4)...)
		case op == 0x44:
			out = append(out, r.bytes(8)...)
		case op == 0xd0: // ref.null t
			out = append(out, r.byte())
		case op == 0xd2: // ref.func
			out = appendU32(out, m.fidx(r.u32()))
		case op == 0xfc:
			sub := r.u32()
			out = appendU32(out, sub)
			switch {
			case sub <= 7: // saturating truncations
			case sub == 8: // memory.init dataidx memidx
				out = appendU32(out, r.u32())
				out = append(out, r.byte())
			case sub == 9: // data.drop
				out = appendU32(out, r.u32())
			case sub == 10: // memory.copy
				out = append(out, r.byte(), r.byte())
			case sub == 11: // memory.fill
				out = append(out, r.byte())
			case sub == 12: // table.init elemidx tableidx
				out = appendU32(out, r.u32())
				out = appendU32(out, r.u32())
			case sub == 13: // elem.drop
				out = appendU32(out, r.u32())
			case sub == 14: // table.copy
				out = appendU32(out, r.u32())
				out = appendU32(out, r.u32())
			case sub >= 15 && sub <= 17: // table.grow, size, fill
				out = appendU32(out, r.u32())
			default:
				return nil, fmt.Errorf("%w: opcode 0xfc %d", ErrMalformed, sub)
			}
		case op == 0xfd, op == 0xfe:
			return nil, fmt.Errorf("%w: SIMD and threads opcodes (0x%02x) are not supported", ErrMalformed, op)
		case op <= 0x01, op == 0x05, op == 0x0b, op == 0x0f, op == 0x1a, op == 0x1b,
			op >= 0x45 && op <= 0xc4, op == 0xd1:
			// no immediates: unreachable, nop, else, end, return, drop, select,
			// numeric operators, ref.is_null
		default:
			return nil, fmt.Errorf("%w: unknown opcode 0x%02x", ErrMalformed, op)
		}
	}
	return out, r.err
}
