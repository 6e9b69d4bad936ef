package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/host/internal/runtime"
	"github.com/keelhq/keel/host/internal/telemetry"
	"github.com/keelhq/keel/host/internal/testkit"
)

// benchRoundTrip times individual host→plugin→host calls with a 1 KiB request body
// echoed back as a 1 KiB response, through the same Plugin.HTTP path the gateway uses
// (encode, borrow an instance, call, decode, return), excluding HTTP.
func benchRoundTrip(ctx context.Context, logger *slog.Logger) error {
	engine, err := runtime.NewEngine(runtime.Config{CacheDir: testkit.CacheDir(), Logger: logger, Metrics: telemetry.New()})
	if err != nil {
		return err
	}
	defer engine.Close(ctx)
	wasm, m, err := testkit.BuildE("bench/guests/echo")
	if err != nil {
		return err
	}
	p, _, err := engine.Load(ctx, m, wasm)
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	body := bytes.Repeat([]byte("k"), 1024)
	req := &wire.HTTPRequest{Method: "POST", Path: "/raw", Route: "/raw", Body: body,
		Headers: []wire.KV{{Name: "content-type", Value: "application/octet-stream"}}}
	buf := make([]byte, 0, 4096)
	call := func() error {
		r, err := p.HTTP(ctx, req, buf)
		if err != nil {
			return err
		}
		if len(r.Body) != len(body) {
			return fmt.Errorf("echo returned %d bytes", len(r.Body))
		}
		return nil
	}
	for i := 0; i < 20000; i++ { // warm up: JIT'd code paths, guest heap at steady state
		if err := call(); err != nil {
			return err
		}
	}
	const n = 100000
	lat := make([]time.Duration, n)
	start := time.Now()
	for i := range lat {
		t0 := time.Now()
		if err := call(); err != nil {
			return err
		}
		lat[i] = time.Since(t0)
	}
	total := time.Since(start)
	sortDurations(lat)

	// Reference: the same bytes through the encoder and decoder natively, which is the
	// part of the round trip that is not wasm.
	var resp wire.HTTPResponse
	var out []byte
	t0 := time.Now()
	for i := 0; i < n; i++ {
		buf = wire.AppendHTTPRequest(buf[:0], req)
		out = wire.AppendHTTPResponse(out[:0], &wire.HTTPResponse{Status: 200, Body: body})
		if err := wire.DecodeHTTPResponse(out, &resp); err != nil {
			return err
		}
	}
	enc := time.Since(t0) / n
	record("call round trip 1 KiB→1 KiB, median", us(percentile(lat, 50)), "native encode+decode "+us(enc), "", "≤ 5 µs")
	record("call round trip 1 KiB→1 KiB, p99", us(percentile(lat, 99)), "", "", "")
	record("call round trip, mean (calls/s on one core)", us(total/n), fmt.Sprintf("%.0f calls/s", float64(n)/total.Seconds()), "", "")
	return nil
}
