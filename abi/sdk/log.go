package keel

import (
	"github.com/keelhq/keel/abi/wire"
)

// Log is the plugin's logger. Records go to the host's structured log, tagged with the
// plugin name, version and the request id of the invocation in progress.
var Log = &Logger{}

// Logger writes structured records through the keel:log/v1 import. Its methods take
// the message and alternating keys and values, as log/slog's do:
//
//	keel.Log.Info("customer created", "id", id, "attempt", n)
//
// It is not a *slog.Logger on purpose: log/slog, with the fmt and reflection it
// brings, made up about a third of a small plugin's module and the host validates
// every byte of a module when it loads it (RATIONALE.md, "Small guests"). Values are
// formatted by type: strings, booleans, integers, floats, []byte (as text),
// time.Time (RFC 3339), time.Duration, errors (their message) and anything with a
// String method. A value of any other type is written as the text "(unformatted
// value of an unsupported type)": convert it to a string first (strconv, or
// fmt.Sprint in a plugin that imports fmt anyway).
type Logger struct {
	attrs []byte // encoded attribute fields added by With
}

// Field tags of a log record (keel:log/v1.write input) and the level numbers, which
// are log/slog's.
const (
	logLevel   = 1
	logMessage = 2
	logAttr    = 3

	levelDebug = -4
	levelInfo  = 0
	levelWarn  = 4
	levelError = 8
)

// Debug logs at debug level.
func (l *Logger) Debug(msg string, args ...any) { l.write(levelDebug, msg, args) }

// Info logs at info level.
func (l *Logger) Info(msg string, args ...any) { l.write(levelInfo, msg, args) }

// Warn logs at warning level.
func (l *Logger) Warn(msg string, args ...any) { l.write(levelWarn, msg, args) }

// Error logs at error level.
func (l *Logger) Error(msg string, args ...any) { l.write(levelError, msg, args) }

// With returns a logger that adds the given keys and values to every record.
func (l *Logger) With(args ...any) *Logger {
	return &Logger{attrs: appendLogAttrs(append([]byte(nil), l.attrs...), args)}
}

func (l *Logger) write(level int64, msg string, args []any) {
	buf := make([]byte, 0, 128+len(l.attrs))
	buf = wire.AppendInt(buf, logLevel, level)
	buf = wire.AppendString(buf, logMessage, msg)
	buf = append(buf, l.attrs...)
	buf = appendLogAttrs(buf, args)
	// A failed log write has nowhere to be reported; the host counts it.
	_, _ = callHost(fnLogWrite, buf)
}

// appendLogAttrs encodes alternating keys and values. Like log/slog, a value without
// a string key before it is recorded under "!BADKEY".
func appendLogAttrs(buf []byte, args []any) []byte {
	for len(args) > 0 {
		key, ok := args[0].(string)
		if !ok || len(args) == 1 {
			buf = wire.AppendPair(buf, logAttr, "!BADKEY", string(appendText(nil, args[0])))
			args = args[1:]
			continue
		}
		buf = wire.AppendPair(buf, logAttr, key, string(appendText(nil, args[1])))
		args = args[2:]
	}
	return buf
}
