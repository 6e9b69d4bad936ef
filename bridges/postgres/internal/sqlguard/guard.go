// Package sqlguard rejects plugin SQL that could escape the per-transaction sandbox.
//
// The host runs plugin statements on a privileged connection after SET LOCAL ROLE and set_config:
// a plugin that could run RESET ROLE, SET, set_config or COMMIT itself would leave its role or
// tenant, or leak session state to the next plugin that borrows the pooled connection. PostgreSQL has
// no switch that stops a role from doing that, so the guard inspects the SQL text first. It is a
// lexical check, defense in depth rather than a proof: see RATIONALE.md for what it cannot see.
package sqlguard

import (
	"errors"
	"fmt"
)

// ErrDenied wraps every refusal, so callers can map it to one stable error code.
var ErrDenied = errors.New("statement not allowed for plugins")

// runtimeLeading lists the only statement kinds a plugin may run during an invocation: data access.
// Everything else (DDL, SET, transaction control, COPY, LISTEN, PREPARE, DO, ...) belongs to migrations
// or to the host.
var runtimeLeading = map[string]bool{
	"select": true, "with": true, "insert": true, "update": true, "delete": true,
	"values": true, "table": true, "merge": true,
}

// migrationDenied lists statement kinds a plugin migration may not run: transaction control (the host
// owns the migration's transaction), session state that would outlive it, and server-side I/O.
var migrationDenied = map[string]bool{
	"begin": true, "start": true, "commit": true, "end": true, "rollback": true, "abort": true,
	"savepoint": true, "release": true, "prepare": true, "execute": true, "deallocate": true,
	"set": true, "reset": true, "discard": true, "listen": true, "unlisten": true, "load": true,
	"copy": true, "checkpoint": true, "vacuum": true, "reindex": true, "cluster": true,
	"declare": true, "fetch": true, "move": true, "close": true,
}

// deniedFunctions are names that change session state or run SQL given as text, which would let a
// statement step around the other rules: set_config sets role or tenant, pg_settings updates call it,
// query_to_xml and ts_stat execute a string, and session advisory locks outlive the transaction on a
// pooled connection.
var deniedFunctions = map[string]bool{
	"set_config":                  true,
	"pg_settings":                 true,
	"query_to_xml":                true,
	"query_to_xmlschema":          true,
	"query_to_xml_and_xmlschema":  true,
	"ts_stat":                     true,
	"pg_advisory_lock":            true,
	"pg_advisory_lock_shared":     true,
	"pg_try_advisory_lock":        true,
	"pg_try_advisory_lock_shared": true,
	"pg_advisory_unlock":          true,
	"pg_advisory_unlock_shared":   true,
	"pg_advisory_unlock_all":      true,
	"dblink":                      true,
	"dblink_exec":                 true,
	"dblink_connect":              true,
	"dblink_connect_u":            true,
	"dblink_send_query":           true,
}

// CheckStatement accepts sql only if it is one data-access statement (SELECT, WITH, INSERT, UPDATE,
// DELETE, MERGE, VALUES, TABLE) that calls none of the denied functions and creates no table with
// SELECT INTO.
func CheckStatement(sql string) error {
	toks, err := lex(sql)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDenied, err)
	}
	stmts := statements(toks)
	switch len(stmts) {
	case 0:
		return fmt.Errorf("%w: empty statement", ErrDenied)
	case 1:
	default:
		return fmt.Errorf("%w: only one statement per call (found %d)", ErrDenied, len(stmts))
	}
	st := stmts[0]
	lead := leadingWord(st)
	if !runtimeLeading[lead] {
		return fmt.Errorf("%w: %q statements are not allowed at run time (only SELECT, WITH, INSERT, UPDATE, DELETE, MERGE, VALUES, TABLE)", ErrDenied, lead)
	}
	if err := checkNames(st); err != nil {
		return err
	}
	sawWrite := false
	for _, t := range st {
		if t.kind != kWord {
			continue
		}
		switch t.text {
		case "insert", "merge":
			sawWrite = true
		case "into":
			if !sawWrite {
				return fmt.Errorf("%w: SELECT INTO creates a table; use INSERT INTO ... SELECT", ErrDenied)
			}
		}
	}
	return nil
}

// CheckMigration accepts a plugin migration file unless a statement controls the transaction, sets
// session state, calls a denied function, gives a function a SET role clause, or holds a function
// body (dollar-quoted, or a string after AS or DO) that sets session state, calls a denied function or
// runs dynamic SQL with EXECUTE, which no lexical check can follow.
func CheckMigration(sql string) error {
	toks, err := lex(sql)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDenied, err)
	}
	for n, st := range statements(toks) {
		lead := leadingWord(st)
		if migrationDenied[lead] {
			return fmt.Errorf("%w: statement %d: %q is not allowed in plugin migrations", ErrDenied, n+1, lead)
		}
		if err := checkNames(st); err != nil {
			return fmt.Errorf("statement %d: %w", n+1, err)
		}
		if isRoutineDDL(st) {
			if err := checkSetRole(st); err != nil {
				return fmt.Errorf("statement %d: %w", n+1, err)
			}
		}
		for i, t := range st {
			body := t.kind == kDollar ||
				t.kind == kString && i > 0 && st[i-1].kind == kWord && (st[i-1].text == "as" || st[i-1].text == "do")
			if !body {
				continue
			}
			if err := checkBody(t.text, 1); err != nil {
				return fmt.Errorf("statement %d: function body: %w", n+1, err)
			}
		}
	}
	return nil
}

// leadingWord returns the first word of a statement, skipping opening parentheses.
func leadingWord(st []token) string {
	for _, t := range st {
		if t.kind == kPunct && t.text == "(" {
			continue
		}
		if t.kind == kWord {
			return t.text
		}
		return ""
	}
	return ""
}

// checkNames rejects denied function names, quoted or not.
func checkNames(st []token) error {
	for _, t := range st {
		if (t.kind == kWord || t.kind == kQuotedIdent) && deniedFunctions[t.text] {
			return fmt.Errorf("%w: %s is not allowed", ErrDenied, t.text)
		}
	}
	return nil
}

// isRoutineDDL reports CREATE [OR REPLACE] FUNCTION/PROCEDURE and ALTER FUNCTION/PROCEDURE/ROUTINE,
// the statements whose SET clause changes a setting while the routine runs.
func isRoutineDDL(st []token) bool {
	var words []string
	for _, t := range st {
		if t.kind == kWord {
			words = append(words, t.text)
			if len(words) == 4 {
				break
			}
		}
	}
	if len(words) < 2 {
		return false
	}
	switch words[0] {
	case "create":
		rest := words[1:]
		if len(rest) >= 2 && rest[0] == "or" && rest[1] == "replace" {
			rest = rest[2:]
		}
		return len(rest) > 0 && (rest[0] == "function" || rest[0] == "procedure")
	case "alter":
		return words[1] == "function" || words[1] == "procedure" || words[1] == "routine"
	}
	return false
}

// roleSettings are the settings that decide who a statement runs as.
var roleSettings = map[string]bool{"role": true, "session": true, "session_authorization": true, "authorization": true}

// checkSetRole rejects SET role / SET session_authorization in a routine definition.
func checkSetRole(st []token) error {
	for i := 0; i+1 < len(st); i++ {
		if st[i].kind == kWord && st[i].text == "set" && (st[i+1].kind == kWord || st[i+1].kind == kQuotedIdent) && roleSettings[st[i+1].text] {
			return fmt.Errorf("%w: a routine may not SET %s", ErrDenied, st[i+1].text)
		}
	}
	return nil
}

// statementStarters are the PL/pgSQL words after which a new statement begins. SET or RESET after one
// of them, after punctuation (';', a label's '>>') or at the start is a statement that changes session
// state; after any other word or a quoted name it is the SET of an UPDATE or ALTER.
var statementStarters = map[string]bool{
	"begin": true, "then": true, "else": true, "loop": true, "exception": true, "as": true, "do": true,
}

// checkBody scans function source. Bodies nest (a DO block may create a function), hence depth.
func checkBody(src string, depth int) error {
	if depth > maxNesting {
		return fmt.Errorf("%w: function bodies nested too deeply", ErrDenied)
	}
	toks, err := lex(src)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDenied, err)
	}
	if err := checkNames(toks); err != nil {
		return err
	}
	for _, st := range statements(toks) {
		if isRoutineDDL(st) {
			if err := checkSetRole(st); err != nil {
				return err
			}
		}
	}
	for i, t := range toks {
		switch {
		case t.kind == kWord && t.text == "execute":
			return fmt.Errorf("%w: dynamic SQL (EXECUTE) is not allowed in plugin functions", ErrDenied)
		case t.kind == kWord && (t.text == "set" || t.text == "reset" || t.text == "commit" || t.text == "rollback" || t.text == "discard"):
			prev := token{kind: kSemicolon}
			if i > 0 {
				prev = toks[i-1]
			}
			if prev.kind != kWord && prev.kind != kQuotedIdent || prev.kind == kWord && statementStarters[prev.text] {
				return fmt.Errorf("%w: %s statements are not allowed in plugin functions", ErrDenied, t.text)
			}
		case t.kind == kDollar:
			if err := checkBody(t.text, depth+1); err != nil {
				return err
			}
		case t.kind == kString && i > 0 && toks[i-1].kind == kWord && (toks[i-1].text == "as" || toks[i-1].text == "do"):
			if err := checkBody(t.text, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
