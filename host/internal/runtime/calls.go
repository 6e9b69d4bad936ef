package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
)

// HTTP calls the plugin's keel_http export. The returned response owns its bytes.
// A *CallError reports a failed call; the gateway turns it into a JSON 5xx.
// It fills in req.Ctx (deadline, plugin, version), so one request value must not be
// passed to concurrent calls.
func (p *Plugin) HTTP(ctx context.Context, req *wire.HTTPRequest, buf []byte) (*wire.HTTPResponse, error) {
	var resp wire.HTTPResponse
	key := routeKey{req.Method, req.Route}
	ro := p.readOnly[key]
	req.Prefetch, req.PrefetchResult = nil, nil // a retry on the next generation runs its own
	if pf := p.prefetch[key]; pf != nil {
		// The lookup and the call share one deadline, as if the handler had run it.
		deadline := p.deadlineFrom(ctx, time.Now())
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
		p.runPrefetch(ctx, deadline, pf, req)
		if !time.Now().Before(deadline) {
			// The lookup took the whole deadline: answer as a call that ran out of
			// time, without starting the guest only to interrupt it.
			p.engine.metrics.Failure(p.manifest.Name, ReasonTimeout)
			return nil, &CallError{Plugin: p.manifest.Name, Export: exportNames[exHTTP], Reason: ReasonTimeout,
				Err: errors.New("the route's declared lookup used up the call's deadline")}
		}
	}
	err := p.invoke(ctx, exHTTP, &req.Ctx, ro, func(cc *wire.CallContext) []byte {
		return wire.AppendHTTPRequest(buf[:0], req)
	}, func(out []byte) (bool, bool, error) {
		if err := wire.DecodeHTTPResponse(out, &resp); err != nil {
			return false, false, err
		}
		resp.Body = append([]byte(nil), resp.Body...)
		return resp.Status < 400 || resp.Flags&wire.FlagCommit != 0, resp.Flags&wire.FlagPanicked != 0, nil
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// deadlineFrom is a call's deadline when it starts at t: the plugin's call timeout, or
// ctx's deadline if that is sooner.
func (p *Plugin) deadlineFrom(ctx context.Context, t time.Time) time.Time {
	deadline := t.Add(p.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return deadline
}

// runPrefetch runs a read_only route's declared lookup (manifest prefetch) through the
// SQL capability, in a unit of work of its own, before the call takes an instance, and
// attaches the encoded request and result to req for the SDK to answer the handler's
// identical query from. An instance is then held only while the guest computes, not
// while the database answers, so concurrent requests keep fewer instances (and their
// memory) in rotation. A read_only route's statements each run in an implicit
// transaction of their own anyway, so running this one first changes nothing else.
// A failure only leaves the lookup out: the handler then asks as usual, and sees the
// error itself if it repeats.
//
// ctx carries the call's deadline, which the lookup shares.
func (p *Plugin) runPrefetch(ctx context.Context, deadline time.Time, pf *manifest.Prefetch, req *wire.HTTPRequest) {
	args := make([]any, len(pf.Params))
	for i, name := range pf.Params {
		for _, kv := range req.Params {
			if kv.Name == name {
				args[i] = kv.Value
				break
			}
		}
	}
	in, err := wire.AppendSQLRequest(nil, &wire.SQLRequest{SQL: pf.SQL, Params: args, JSON: true})
	if err != nil {
		return
	}
	cc := req.Ctx
	cc.Deadline, cc.Plugin, cc.Version = deadline.UnixNano(), p.manifest.Name, p.manifest.Version
	c := &Call{Plugin: p, Context: &cc, deadline: deadline, readOnly: true, ctx: ctx} // ctx has the deadline already
	out, err := p.engine.sqlQuery(ctx, c, in)
	if ferr := p.finish(ctx, c, err == nil); err != nil || ferr != nil {
		p.engine.metrics.Prefetch(p.manifest.Name, "failed")
		p.logger.Debug("route prefetch failed; the handler will query itself", "route", req.Route, "request_id", req.Ctx.RequestID, "err", errors.Join(err, ferr))
		return
	}
	p.engine.metrics.Prefetch(p.manifest.Name, "ok")
	req.Prefetch, req.PrefetchResult = in, out
}

// Event calls the plugin's keel_event export. A non-zero result code means the plugin
// did not process the event and it must be redelivered.
//
// Like HTTP, it fills in ev.Ctx: one event value must not be passed to concurrent calls.
func (p *Plugin) Event(ctx context.Context, ev *wire.Event) (*wire.Result, error) {
	var res wire.Result
	err := p.invoke(ctx, exEvent, &ev.Ctx, false, func(cc *wire.CallContext) []byte {
		return wire.AppendEvent(nil, ev)
	}, func(out []byte) (bool, bool, error) {
		if err := wire.DecodeResult(out, &res); err != nil {
			return false, false, err
		}
		res.Data = append([]byte(nil), res.Data...)
		return res.Code == 0, res.Flags&wire.FlagPanicked != 0, nil
	})
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// Health calls keel_health and returns nil when the plugin reports itself healthy.
func (p *Plugin) Health(ctx context.Context) error {
	if !p.HasExport("keel_health") {
		return nil
	}
	var res wire.Result
	// Health checks act for the platform pseudo-tenant, so a plugin can check its
	// database (SELECT 1) through the SQL capability; row-level security shows it no
	// tenant's rows.
	cc := wire.CallContext{RequestID: "health", Tenant: HealthTenant}
	err := p.invoke(ctx, exHealth, &cc, false, func(cc *wire.CallContext) []byte {
		return wire.AppendCallContextFields(nil, cc)
	}, func(out []byte) (bool, bool, error) {
		if err := wire.DecodeResult(out, &res); err != nil {
			return false, false, err
		}
		return res.Code == 0, res.Flags&wire.FlagPanicked != 0, nil
	})
	if err != nil {
		return err
	}
	if res.Code != 0 {
		return fmt.Errorf("plugin %s reports unhealthy (%s): %s", p.manifest.Name, wire.Code(res.Code), res.Message)
	}
	return nil
}

// HealthTenant is the tenant health checks act for.
const HealthTenant = "platform"

// HasExport reports whether the module exports name.
func (p *Plugin) HasExport(name string) bool {
	_, ok := p.module.compiled.ExportedFunctions()[name]
	return ok
}

// invoke is the one path every call takes: admit, borrow an instance under the call's
// deadline, run the export, decode, return or retire the instance, finish the unit of
// work. readOnly marks the call of a read_only route; encode builds the input once the
// deadline is known; decode reports whether the output counts as success and whether
// the guest panicked.
func (p *Plugin) invoke(ctx context.Context, ex int, cc *wire.CallContext, readOnly bool,
	encode func(*wire.CallContext) []byte,
	decode func(out []byte) (success, panicked bool, err error)) error {

	name := p.manifest.Name
	export := exportNames[ex]
	if !p.gate.enter() {
		return ErrClosed
	}
	defer p.gate.leave()
	start := time.Now()
	defer func() { p.observers[ex].Observe(time.Since(start).Seconds()) }()

	// The deadline is enforced inside the guest by tick and, for waiting on the pool and
	// for capabilities, by contexts derived only when needed: a timer per call would
	// cost more than the call itself.
	deadline := p.deadlineFrom(ctx, start)
	cc.Deadline, cc.Plugin, cc.Version = deadline.UnixNano(), name, p.manifest.Version

	fail := func(reason string, err error) error {
		p.engine.metrics.Failure(name, reason)
		return &CallError{Plugin: name, Export: export, Reason: reason, Err: err}
	}

	in, err := p.acquire(ctx, deadline)
	if err != nil {
		switch {
		case errors.Is(err, ErrClosed):
			return ErrClosed
		case errors.Is(err, context.DeadlineExceeded):
			return fail(ReasonPoolExhausted, fmt.Errorf("no instance free within the deadline (pool_max %d)", p.manifest.Limits.PoolMax))
		case errors.Is(err, context.Canceled):
			return fail(ReasonCanceled, err)
		default:
			return fail(ReasonInit, err)
		}
	}
	p.inUseGauge.Set(float64(p.inUse.Add(1)))
	c := &Call{Plugin: p, Context: cc, inst: in, deadline: deadline, readOnly: readOnly}
	defer c.release()
	out, err := in.call(context.WithValue(ctx, callKey{}, c), ex, encode(cc), p.maxOut)
	var success, panicked bool
	if err == nil {
		success, panicked, err = decode(out)
		if err != nil {
			err = &malformedError{err}
		}
	}
	p.inUseGauge.Set(float64(p.inUse.Add(-1)))
	if err != nil || panicked {
		p.discard(in)
	} else {
		p.release(in)
	}
	if err != nil {
		var reason string
		if me, ok := err.(*malformedError); ok {
			reason, err = ReasonMalformed, me.err
		} else {
			reason = classify(ctx, err, in)
		}
		p.logger.Warn("plugin call failed", "export", export, "reason", reason, "request_id", cc.RequestID, "err", err)
		p.finish(ctx, c, false)
		return fail(reason, err)
	}
	if panicked {
		p.engine.metrics.Failure(name, ReasonPanic)
		p.logger.Warn("plugin recovered from a panic; instance retired", "export", export, "request_id", cc.RequestID)
		success = false
	}
	if err := p.finish(ctx, c, success); err != nil {
		return fail(ReasonCommit, err)
	}
	return nil
}

// finish runs the call's finishers, e.g. commit or roll back its transaction. They run
// even when the call's own deadline has passed, bounded by a short grace period, so a
// timed-out call still rolls back promptly.
func (p *Plugin) finish(ctx context.Context, c *Call, success bool) error {
	if len(c.finishes) == 0 {
		return nil
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var errs []error
	for _, f := range c.finishes {
		if err := f.Finish(fctx, success); err != nil {
			errs = append(errs, err)
			success = false
		}
	}
	return errors.Join(errs...)
}

type malformedError struct{ err error }

func (e *malformedError) Error() string { return e.err.Error() }
