package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// genesisHash is the prev_hash of a tenant's first record.
var genesisHash = strings.Repeat("0", 64)

// atLayout formats a record's time in its canonical form: UTC, microseconds (the
// precision PostgreSQL stores), always six fractional digits.
const atLayout = "2006-01-02T15:04:05.000000Z"

// record is one audit record as stored in the records and archive tables.
type record struct {
	Tenant    string
	Seq       int64
	EventID   string
	Source    string
	Action    string
	Actor     string
	Resource  string
	RequestID string
	// Detail is the detail document in PostgreSQL's jsonb text form (what the
	// database returns for the column), never the publisher's original bytes.
	Detail   string
	At       time.Time
	PrevHash string
	Hash     string
}

// computeHash returns the record's chain hash:
//
//	hex(sha256(prev_hash || canonical))
//
// where prev_hash is the 64 lowercase hex characters of the previous record's hash
// (64 zeros for the first record) and canonical is the canonical JSON (see
// canonicalJSON) of the object
//
//	{"action","actor","at","detail","event_id","request_id","resource","seq","source","tenant"}
//
// with at formatted as atLayout and seq as a JSON integer. It fails only if the
// stored detail is not JSON.
func (r *record) computeHash(prevHash string) (string, error) {
	var detail any
	if err := decodeJSON(r.Detail, &detail); err != nil {
		return "", fmt.Errorf("record %d: detail: %w", r.Seq, err)
	}
	doc := map[string]any{
		"action":     r.Action,
		"actor":      r.Actor,
		"at":         r.At.UTC().Format(atLayout),
		"detail":     detail,
		"event_id":   r.EventID,
		"request_id": r.RequestID,
		"resource":   r.Resource,
		"seq":        json.Number(strconv.FormatInt(r.Seq, 10)),
		"source":     r.Source,
		"tenant":     r.Tenant,
	}
	b := make([]byte, 0, 256+len(r.Detail))
	b = append(b, prevHash...)
	b = appendCanonical(b, doc)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func decodeJSON(s string, v *any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

// canonicalJSON re-encodes a JSON document canonically: no insignificant whitespace,
// object keys sorted by their UTF-8 bytes (which is code point order), numbers
// exactly as written in the input, strings escaped minimally (\" \\ \b \f \n \r \t,
// other control characters as \u00xx, everything else as raw UTF-8). This is what
// Python's json.dumps(v, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
// produces when numbers are kept as their text, so an auditor can recompute hashes
// without this code.
func canonicalJSON(s string) ([]byte, error) {
	var v any
	if err := decodeJSON(s, &v); err != nil {
		return nil, err
	}
	return appendCanonical(nil, v), nil
}

func appendCanonical(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case json.Number:
		return append(b, v...)
	case string:
		return appendString(b, v)
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCanonical(b, e)
		}
		return append(b, ']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendCanonical(b, v[k])
		}
		return append(b, '}')
	default:
		// Only the types encoding/json produces with UseNumber reach here.
		panic(fmt.Sprintf("audit: canonical JSON of %T", v))
	}
}

const hexDigits = "0123456789abcdef"

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x80 {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, `\ufffd`...) // cannot come from PostgreSQL text; kept total anyway
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch c {
		case '"':
			b = append(b, `\"`...)
		case '\\':
			b = append(b, `\\`...)
		case '\b':
			b = append(b, `\b`...)
		case '\f':
			b = append(b, `\f`...)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		default:
			if c < 0x20 {
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			} else {
				b = append(b, c)
			}
		}
		i++
	}
	return append(b, '"')
}

// link is the result of checking one record against the chain.
type link int

const (
	linkOK link = iota
	linkSeqGap
	linkPrevMismatch
	linkHashMismatch
)

func (l link) String() string {
	switch l {
	case linkSeqGap:
		return "seq_gap"
	case linkPrevMismatch:
		return "prev_hash_mismatch"
	case linkHashMismatch:
		return "hash_mismatch"
	}
	return "ok"
}

// check verifies r as the successor of (wantSeq-1, prevHash).
func (r *record) check(wantSeq int64, prevHash string) (link, error) {
	if r.Seq != wantSeq {
		return linkSeqGap, nil
	}
	if r.PrevHash != prevHash {
		return linkPrevMismatch, nil
	}
	h, err := r.computeHash(prevHash)
	if err != nil {
		return linkHashMismatch, err
	}
	if h != r.Hash {
		return linkHashMismatch, nil
	}
	return linkOK, nil
}
