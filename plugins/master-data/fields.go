package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// kind is what a field holds, which decides how it is validated, stored and rendered.
type kind uint8

const (
	kText     kind = iota // free text, trimmed; one line unless the field is multiline
	kCode                 // a business identifier, unique per tenant among live rows
	kEmail                // an email address (addr-spec only, no display name)
	kPhone                // a phone number
	kEnum                 // one of a fixed list
	kCountry              // ISO 3166-1 alpha-2, stored upper case
	kCurrency             // ISO 4217 alphabetic code shape, stored upper case
	kInt                  // an integer in [min, maxInt]
	kDecimal              // a non-negative decimal, stored as numeric, rendered as a JSON number
	kRef                  // the id of a live row of the same entity (accounts.parent_id)
)

// field describes one writable column.
type field struct {
	name      string
	kind      kind
	required  bool
	max       int      // text kinds: maximum length in characters
	multiline bool     // kText: newlines and tabs allowed
	enum      []string // kEnum
	def       any      // stored when a create omits the field (nil: NULL)
	min       int64    // kInt
	maxInt    int64    // kInt
	digits    int      // kDecimal: digits before the decimal point
	scale     int      // kDecimal: digits after it
}

var (
	codeRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
	phoneRE = regexp.MustCompile(`^\+?[0-9][0-9 ().-]*[0-9]$`)
	upperRE = regexp.MustCompile(`^[A-Z]{3}$`)
)

// countries are the officially assigned ISO 3166-1 alpha-2 codes.
var countries = func() map[string]bool {
	const list = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ " +
		"BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ " +
		"CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ " +
		"DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR " +
		"GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU " +
		"ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ " +
		"LA LB LC LI LK LR LS LT LU LV LY " +
		"MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ " +
		"NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA " +
		"RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ " +
		"TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU " +
		"WF WS YE YT ZA ZM ZW"
	m := map[string]bool{}
	for _, c := range strings.Fields(list) {
		m[c] = true
	}
	return m
}()

// validUUID reports whether s is a UUID in its 8-4-4-4-12 hex form. Every read by id
// checks one, so it is straight-line table lookups rather than a regular expression
// (the regexp engine was a visible share of the GET path's time in the wasm guest) or
// a loop: in Go's wasm code each loop turn and taken branch is an indirect jump
// (RATIONALE.md, "Guest decoders walk once, with few branches"); 2 566 → 2 176 → 894
// instructions a call in wasm (BenchmarkValidUUID) for a switch per byte, a table in
// a loop, and this.
func validUUID(s string) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	return notHex[s[0]]|notHex[s[1]]|notHex[s[2]]|notHex[s[3]]|notHex[s[4]]|notHex[s[5]]|notHex[s[6]]|notHex[s[7]]|
		notHex[s[9]]|notHex[s[10]]|notHex[s[11]]|notHex[s[12]]|notHex[s[14]]|notHex[s[15]]|notHex[s[16]]|notHex[s[17]]|
		notHex[s[19]]|notHex[s[20]]|notHex[s[21]]|notHex[s[22]]|notHex[s[24]]|notHex[s[25]]|notHex[s[26]]|notHex[s[27]]|
		notHex[s[28]]|notHex[s[29]]|notHex[s[30]]|notHex[s[31]]|notHex[s[32]]|notHex[s[33]]|notHex[s[34]]|notHex[s[35]] == 0
}

// notHex is 1 for every byte that is not a hexadecimal digit.
var notHex = func() (t [256]byte) {
	for c := range t {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			t[c] = 1
		}
	}
	return t
}()

// parse validates a field's JSON value and returns what to store: nil (NULL), a string
// or an int64. msg is the field-level error message when the value is invalid.
func (f *field) parse(raw json.RawMessage) (val any, msg string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		if f.required {
			return nil, "is required"
		}
		return nil, ""
	}
	switch f.kind {
	case kInt:
		var n json.Number
		if raw[0] == '"' || json.Unmarshal(raw, &n) != nil {
			return nil, "must be an integer"
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || i < f.min || i > f.maxInt {
			return nil, fmt.Sprintf("must be an integer between %d and %d", f.min, f.maxInt)
		}
		return i, ""
	case kDecimal:
		var s string
		if raw[0] == '"' {
			if json.Unmarshal(raw, &s) != nil {
				return nil, "must be a number"
			}
			s = strings.TrimSpace(s)
		} else {
			var n json.Number
			if json.Unmarshal(raw, &n) != nil {
				return nil, "must be a number"
			}
			s = n.String()
		}
		if s == "" {
			if f.required {
				return nil, "is required"
			}
			return nil, ""
		}
		if !validDecimal(s, f.digits, f.scale) {
			return nil, fmt.Sprintf("must be a non-negative number with at most %d digits before and %d after the decimal point", f.digits, f.scale)
		}
		return s, ""
	}
	// Every other kind is a string.
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return nil, "must be a string"
	}
	return f.parseString(s)
}

// parseString validates a string value (from a JSON body or a query filter).
func (f *field) parseString(s string) (any, string) {
	s = strings.TrimSpace(s)
	if s == "" {
		if f.required {
			return nil, "is required"
		}
		return nil, ""
	}
	if f.max > 0 && utf8.RuneCountInString(s) > f.max {
		return nil, fmt.Sprintf("must be at most %d characters", f.max)
	}
	for _, c := range s {
		if unicode.IsControl(c) && !(f.multiline && (c == '\n' || c == '\r' || c == '\t')) {
			return nil, "must not contain control characters"
		}
	}
	switch f.kind {
	case kCode:
		if !codeRE.MatchString(s) {
			return nil, "must start with a letter or digit and contain only letters, digits, '.', '_', '/' and '-'"
		}
	case kEmail:
		a, err := mail.ParseAddress(s)
		at := strings.LastIndexByte(s, '@')
		if err != nil || a.Name != "" || a.Address != s || at < 1 || !validDomain(s[at+1:]) {
			return nil, "must be a valid email address"
		}
	case kPhone:
		if !phoneRE.MatchString(s) || countDigits(s) < 3 {
			return nil, "must be a phone number: digits, spaces, '(', ')', '.', '-' and an optional leading '+'"
		}
	case kEnum:
		if !slices.Contains(f.enum, s) {
			return nil, "must be one of " + strings.Join(f.enum, ", ")
		}
	case kCountry:
		s = strings.ToUpper(s)
		if !countries[s] {
			return nil, "must be an ISO 3166-1 alpha-2 country code such as DE or US"
		}
	case kCurrency:
		s = strings.ToUpper(s)
		if !upperRE.MatchString(s) {
			return nil, "must be an ISO 4217 currency code such as EUR or USD"
		}
	case kRef:
		if !validUUID(s) {
			return nil, "must be an id (a UUID)"
		}
		s = strings.ToLower(s)
	}
	return s, ""
}

func countDigits(s string) int {
	n := 0
	for _, c := range s {
		if c >= '0' && c <= '9' {
			n++
		}
	}
	return n
}

// validDomain accepts a DNS name with at least two labels.
func validDomain(d string) bool {
	labels := strings.Split(d, ".")
	if len(d) > 253 || len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}

// validDecimal accepts non-negative plain decimals ("12", "12.5", "0.25") within the
// given precision; exponents, signs and leading '.' are refused.
func validDecimal(s string, digits, scale int) bool {
	ip, fp, hasDot := strings.Cut(s, ".")
	if ip == "" || hasDot && (fp == "" || len(fp) > scale) {
		return false
	}
	for _, c := range ip + fp {
		if c < '0' || c > '9' {
			return false
		}
	}
	ip = strings.TrimLeft(ip, "0")
	return len(ip) <= digits
}
