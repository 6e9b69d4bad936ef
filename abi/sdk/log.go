package keel

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/keelhq/keel/abi/wire"
)

// Log is the plugin's logger. Records go to the host's structured log, tagged with the
// plugin name, version and the request id of the invocation in progress.
var Log = slog.New(hostHandler{})

// hostHandler forwards slog records to the keel:log/v1 import.
type hostHandler struct {
	attrs []slog.Attr
	group string
}

// Field tags of a log record (keel:log/v1.write input).
const (
	logLevel   = 1
	logMessage = 2
	logAttr    = 3
)

func (h hostHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h hostHandler) Handle(_ context.Context, r slog.Record) error {
	buf := make([]byte, 0, 128)
	buf = wire.AppendInt(buf, logLevel, int64(r.Level))
	buf = wire.AppendString(buf, logMessage, r.Message)
	add := func(a slog.Attr) {
		k := a.Key
		if h.group != "" {
			k = h.group + "." + k
		}
		buf = wire.AppendPair(buf, logAttr, k, fmt.Sprint(a.Value.Resolve().Any()))
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(func(a slog.Attr) bool { add(a); return true })
	_, err := callHost(fnLogWrite, buf)
	return err
}

func (h hostHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return n
}

func (h hostHandler) WithGroup(name string) slog.Handler {
	n := h
	if n.group != "" {
		name = n.group + "." + name
	}
	n.group = name
	return n
}
