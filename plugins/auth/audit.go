package main

import (
	"time"

	keel "github.com/keelhq/keel/abi/sdk"
)

// auditTopic carries the audit trail of every plugin and of the host.
const auditTopic = "audit.events"

// auditEvent is the payload of an audit event; its event type equals Action.
type auditEvent struct {
	Action    string         `json:"action"`
	Actor     string         `json:"actor"`
	Resource  string         `json:"resource"`
	RequestID string         `json:"request_id"`
	Details   map[string]any `json:"details,omitempty"`
}

// audit publishes an audit event in the invocation's unit of work: it is delivered only
// if the change it describes commits. Events are ordered per tenant (the audit plugin
// chains each tenant's records). A failure to publish fails the call, so no change is
// ever committed without its audit event.
func audit(r *keel.Request, action, actor, resource string, details map[string]any) error {
	_, err := keel.Events.Publish(auditTopic, action, auditEvent{
		Action: action, Actor: actor, Resource: resource, RequestID: r.Call().RequestID(), Details: details,
	}, keel.Key(r.Call().Tenant()))
	return err
}

// keepWork marks an error response whose database writes and events must nevertheless
// be kept: the revocation of a session whose refresh token was reused and the audit
// event of a failed login.
//
// KNOWN GAP: at ABI level 1 the host commits an HTTP invocation's unit of work only when
// the status is below 400 (ABI.md, keel:sql/v1), and a plugin has no way to ask for a
// commit on an error response. Until the host offers one (proposed: an HTTPResponse flag
// "commit", set from the SDK), the work below is rolled back and this plugin falls back
// to what does not roll back: the cache (a revoked-session marker that makes every later
// refresh of the family fail) and the host log (a warning with audit=true).
func keepWork(resp *keel.Response) *keel.Response { return resp.Commit() }

// count adds one to a counter; metrics are best effort and never fail a call.
func count(name string, labels ...string) { _ = keel.M(name).Inc(labels...) }

func observe(name string, since time.Time) { _ = keel.M(name).Observe(time.Since(since).Seconds()) }

// now is the plugin's clock (a variable so that it is obvious where time comes from).
var now = time.Now
