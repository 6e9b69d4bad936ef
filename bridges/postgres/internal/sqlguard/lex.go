package sqlguard

import (
	"errors"
	"fmt"
	"strings"
)

// kind classifies a token; the guard only needs to tell words from everything else and to find
// string bodies that may hold function source.
type kind uint8

const (
	kWord        kind = iota // keyword or unquoted identifier, lowercased
	kQuotedIdent             // "identifier", with "" unescaped
	kString                  // '...', E'...', B'...', X'...', N'...', with quotes unescaped
	kDollar                  // $tag$...$tag$, content only
	kParam                   // $1
	kNumber                  // 123, 1.5e3
	kPunct                   // any other single byte: ( ) , . :: etc.
	kSemicolon               // ;
)

type token struct {
	kind kind
	text string
}

// errLex wraps every tokenizer failure so callers can tell malformed SQL from forbidden SQL.
var errLex = errors.New("cannot tokenize SQL")

// maxNesting bounds recursion into function bodies (a dollar-quoted body inside a body ...).
const maxNesting = 8

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdentCont(c byte) bool {
	return isIdentStart(c) || c >= '0' && c <= '9' || c == '$'
}

// lex splits src into tokens following PostgreSQL's lexical rules for comments, quoting and
// dollar quoting (with standard_conforming_strings on, which the host enforces). It fails closed:
// anything it cannot delimit with certainty is an error, never a guess.
func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case isSpace(c):
			i++
		case c == '-' && i+1 < len(src) && src[i+1] == '-':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			depth := 0
			for {
				if i+1 >= len(src) {
					return nil, fmt.Errorf("%w: unterminated /* comment", errLex)
				}
				if src[i] == '/' && src[i+1] == '*' {
					depth++
					i += 2
					continue
				}
				if src[i] == '*' && src[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
					continue
				}
				i++
			}
		case c == '\'':
			s, n, err := lexString(src[i:], false)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kString, s})
			i += n
		case c == '"':
			s, n, err := lexQuotedIdent(src[i:])
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kQuotedIdent, s})
			i += n
		case c == '$':
			if i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9' {
				j := i + 1
				for j < len(src) && src[j] >= '0' && src[j] <= '9' {
					j++
				}
				toks = append(toks, token{kParam, src[i:j]})
				i = j
				continue
			}
			tag, ok := dollarTag(src[i:])
			if !ok {
				toks = append(toks, token{kPunct, "$"})
				i++
				continue
			}
			end := strings.Index(src[i+len(tag):], tag)
			if end < 0 {
				return nil, fmt.Errorf("%w: unterminated dollar-quoted string %s", errLex, tag)
			}
			toks = append(toks, token{kDollar, src[i+len(tag) : i+len(tag)+end]})
			i += 2*len(tag) + end
		case isIdentStart(c):
			j := i + 1
			for j < len(src) && isIdentCont(src[j]) {
				j++
			}
			word := strings.ToLower(src[i:j])
			if j < len(src) && src[j] == '&' && word == "u" && j+1 < len(src) && (src[j+1] == '\'' || src[j+1] == '"') {
				return nil, fmt.Errorf("%w: Unicode-escaped strings and identifiers (U&) are not supported", errLex)
			}
			if j < len(src) && src[j] == '\'' && (word == "e" || word == "b" || word == "x" || word == "n") {
				s, n, err := lexString(src[j:], word == "e")
				if err != nil {
					return nil, err
				}
				toks = append(toks, token{kString, s})
				i = j + n
				continue
			}
			toks = append(toks, token{kWord, word})
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9':
			// Digits and dots, then an exponent only when digits follow it: like PostgreSQL, "1or"
			// is the number 1 followed by the word "or", so letters are never swallowed here.
			j := i + 1
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.') {
				j++
			}
			if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
				k := j + 1
				if k < len(src) && (src[k] == '+' || src[k] == '-') {
					k++
				}
				if k < len(src) && src[k] >= '0' && src[k] <= '9' {
					for k < len(src) && src[k] >= '0' && src[k] <= '9' {
						k++
					}
					j = k
				}
			}
			toks = append(toks, token{kNumber, src[i:j]})
			i = j
		case c == ';':
			toks = append(toks, token{kSemicolon, ";"})
			i++
		default:
			toks = append(toks, token{kPunct, src[i : i+1]})
			i++
		}
	}
	return toks, nil
}

// lexString reads a single-quoted string starting at s[0] == '\”. With escapes (E” strings) a
// backslash protects the next byte. It returns the unescaped content and the bytes consumed.
func lexString(s string, escapes bool) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch {
		case escapes && s[i] == '\\':
			if i+1 >= len(s) {
				return "", 0, fmt.Errorf("%w: unterminated string", errLex)
			}
			b.WriteByte(s[i+1])
			i++
		case s[i] == '\'':
			if i+1 < len(s) && s[i+1] == '\'' {
				b.WriteByte('\'')
				i++
				continue
			}
			return b.String(), i + 1, nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, fmt.Errorf("%w: unterminated string", errLex)
}

// lexQuotedIdent reads a double-quoted identifier starting at s[0] == '"'.
func lexQuotedIdent(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] == '"' {
			if i+1 < len(s) && s[i+1] == '"' {
				b.WriteByte('"')
				i++
				continue
			}
			return b.String(), i + 1, nil
		}
		b.WriteByte(s[i])
	}
	return "", 0, fmt.Errorf("%w: unterminated quoted identifier", errLex)
}

// dollarTag returns the opening delimiter ($$ or $tag$) at the start of s, if there is one.
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		c := s[j]
		if c == '$' {
			return s[:j+1], true
		}
		if j == 1 && !isIdentStart(c) || j > 1 && !(isIdentStart(c) || c >= '0' && c <= '9') {
			return "", false
		}
	}
	return "", false
}

// statements splits tokens at semicolons, dropping empty statements.
func statements(toks []token) [][]token {
	var out [][]token
	start := 0
	for i, t := range toks {
		if t.kind == kSemicolon {
			if i > start {
				out = append(out, toks[start:i])
			}
			start = i + 1
		}
	}
	if start < len(toks) {
		out = append(out, toks[start:])
	}
	return out
}
