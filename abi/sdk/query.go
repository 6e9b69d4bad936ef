package keel

import (
	"errors"
	"strings"
)

// Values are the parameters of a query string, each name with its values in order.
// Ranging over it lists the names.
//
// It stands in for net/url.Values, whose package pulls fmt and its reflection into a
// plugin (see Logger); the parsing rules are net/url.ParseQuery's, checked against it
// by a fuzz test.
type Values map[string][]string

// Get returns the first value of name, or "" when there is none.
func (v Values) Get(name string) string {
	if vs := v[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// Has reports whether name is present, even with an empty value.
func (v Values) Has(name string) bool {
	_, ok := v[name]
	return ok
}

// maxQueryParams bounds the pairs one query string may carry, as net/url does by
// default; the rest are ignored and reported as an error.
const maxQueryParams = 10000

var (
	errQuerySemicolon = errors.New("keel: invalid semicolon separator in query")
	errQueryEscape    = errors.New("keel: invalid escape in query")
	errQueryTooMany   = errors.New("keel: more than 10000 query parameters")
)

// ParseQuery parses a URL query string ("a=1&b=x+y&b=%2F"). Pairs separated by '&';
// '+' is a space; %XX is a byte. A pair with a semicolon or a bad escape is skipped and
// reported as the error, the others are still returned.
func ParseQuery(query string) (Values, error) {
	m := Values{}
	var err error
	n := 0
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		if strings.IndexByte(pair, ';') >= 0 {
			err = firstErr(err, errQuerySemicolon)
			continue
		}
		if pair == "" {
			continue
		}
		if n++; n > maxQueryParams {
			return m, errQueryTooMany
		}
		k, v, _ := strings.Cut(pair, "=")
		k, ok1 := unescapeQuery(k)
		v, ok2 := unescapeQuery(v)
		if !ok1 || !ok2 {
			err = firstErr(err, errQueryEscape)
			continue
		}
		m[k] = append(m[k], v)
	}
	return m, err
}

func firstErr(have, next error) error {
	if have != nil {
		return have
	}
	return next
}

// unescapeQuery decodes one query component: '+' → ' ', %XX → the byte XX.
func unescapeQuery(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			b = append(b, ' ')
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "", false
			}
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b), true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}
