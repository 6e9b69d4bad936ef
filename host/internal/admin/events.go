package admin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/bridges/bus"
	"github.com/keelhq/keel/host/internal/events"
	"github.com/keelhq/keel/host/internal/gateway"
)

// EventsConfig configures the admin routes of the dashboard's events page.
type EventsConfig struct {
	// Token and AdminJWT are the admin credentials, the same as Config's.
	Token    string
	AdminJWT func(ctx context.Context, token string) (actor string, err error)
	Logger   *slog.Logger
	// Bus is the host's event bus. Counts, lag and the dead-letter routes need it to
	// implement bus.Inspector (both bridges do); without that, the topic list still shows
	// what the plugins declare.
	Bus bus.Bus
	// Manifests returns the manifests of the plugins active on this host. Their declared
	// topics are the ones listed and the only ones the dead-letter routes act on, so that the
	// admin API cannot be used to read or write arbitrary broker topics.
	Manifests func() []*manifest.Manifest
	// Topics are topics the host itself publishes (the host audit topic), listed and
	// operable like the plugins' ones.
	Topics []string
	// Audit records replays and discards, like Config.Audit.
	Audit func(action, actor, resource, requestID string, detail map[string]any)
}

// MountEvents adds the events routes to app:
//
//	GET  /admin/api/events                          declared topics, sizes, lag, dead letters
//	GET  /admin/api/events/dlq/:topic?limit=N       messages parked in topic's dead-letter topic
//	POST /admin/api/events/dlq/:topic/:id/replay    republish one to topic, then remove it
//	POST /admin/api/events/dlq/:topic/:id/discard   remove one
//
// :topic is the original topic, not its ".dlq" name. The routes authenticate themselves,
// as MountMetrics' do, so the mount order with Mount does not matter.
func MountEvents(app *fiber.App, cfg EventsConfig) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &api{cfg: Config{Token: cfg.Token, AdminJWT: cfg.AdminJWT, Logger: cfg.Logger, Audit: cfg.Audit}}
	e := &eventsAPI{cfg: cfg}
	e.insp, _ = cfg.Bus.(bus.Inspector)
	app.Get("/admin/api/events", a.authOnce, e.list)
	app.Get("/admin/api/events/dlq/:topic", a.authOnce, e.parked)
	app.Post("/admin/api/events/dlq/:topic/:id/replay", a.authOnce, e.replay)
	app.Post("/admin/api/events/dlq/:topic/:id/discard", a.authOnce, e.discard)
}

type eventsAPI struct {
	cfg  EventsConfig
	insp bus.Inspector // nil when the bus cannot be inspected
}

// brokerTimeout bounds the broker calls of one admin request.
const brokerTimeout = 15 * time.Second

// TopicView is one topic in GET /admin/api/events.
type TopicView struct {
	Topic      string `json:"topic"`
	Exists     bool   `json:"exists"`
	Messages   int64  `json:"messages"`
	Partitions int    `json:"partitions,omitempty"`
	// Publishers are the plugins (or "host") that declare publishing to the topic.
	Publishers    []string           `json:"publishers"`
	Subscriptions []SubscriptionView `json:"subscriptions"`
	DLQ           DLQView            `json:"dlq"`
	// Error is set when the broker could not be asked about this topic.
	Error string `json:"error,omitempty"`
}

// DLQView is a topic's dead-letter topic.
type DLQView struct {
	Topic    string `json:"topic"`
	Exists   bool   `json:"exists"`
	Messages int64  `json:"messages"`
	// Subscriptions are plugins that consume the dead letters themselves.
	Subscriptions []SubscriptionView `json:"subscriptions"`
}

// SubscriptionView is one declared subscription and its consumer group's position.
type SubscriptionView struct {
	Plugin      string `json:"plugin"`
	Group       string `json:"group"`
	MaxAttempts int    `json:"max_attempts,omitempty"`
	Known       bool   `json:"known"`
	Lag         int64  `json:"lag"`
	// Pending is null when the broker cannot tell (Kafka).
	Pending *int64 `json:"pending"`
}

// ParkedView is one message in GET /admin/api/events/dlq/:topic.
type ParkedView struct {
	// ID is the broker position to replay or discard it with.
	ID            string            `json:"id"`
	Topic         string            `json:"topic"` // the topic it was consumed from
	Group         string            `json:"group"` // the consumer group that gave up
	Error         string            `json:"error"`
	Attempts      int               `json:"attempts"`
	ParkedAt      time.Time         `json:"parked_at"`
	MessageID     string            `json:"message_id,omitempty"`
	Key           string            `json:"key,omitempty"`
	Removable     bool              `json:"removable"`
	Size          int               `json:"size"`
	Event         *EventRef         `json:"event,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
	Payload       json.RawMessage   `json:"payload,omitempty"`
	PayloadText   string            `json:"payload_text,omitempty"`
	PayloadBase64 string            `json:"payload_base64,omitempty"`
}

// EventRef is the envelope of a parked event, without its payload.
type EventRef struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Tenant    string    `json:"tenant,omitempty"`
	Source    string    `json:"source"`
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id,omitempty"`
}

// declared collects the topics of the active plugins. A subscription to "t.dlq" is listed
// under t's dead-letter topic.
func (e *eventsAPI) declared() map[string]*TopicView {
	out := map[string]*TopicView{}
	get := func(t string) *TopicView {
		v := out[t]
		if v == nil {
			v = &TopicView{Topic: t, Publishers: []string{}, Subscriptions: []SubscriptionView{},
				DLQ: DLQView{Topic: bus.DLQTopic(t), Subscriptions: []SubscriptionView{}}}
			out[t] = v
		}
		return v
	}
	for _, t := range e.cfg.Topics {
		v := get(t)
		v.Publishers = append(v.Publishers, "host")
	}
	if e.cfg.Manifests == nil {
		return out
	}
	for _, m := range e.cfg.Manifests() {
		for _, p := range m.Capabilities.Publish {
			v := get(p.Topic)
			v.Publishers = append(v.Publishers, m.Name)
		}
		for _, s := range m.Capabilities.Subscribe {
			sv := SubscriptionView{Plugin: m.Name, Group: s.Group, MaxAttempts: s.MaxAttempts}
			if sv.Group == "" {
				sv.Group = m.Name // the manifest's default, for manifests not validated
			}
			if parent, ok := strings.CutSuffix(s.Topic, bus.DLQSuffix); ok {
				v := get(parent)
				v.DLQ.Subscriptions = append(v.DLQ.Subscriptions, sv)
				continue
			}
			v := get(s.Topic)
			v.Subscriptions = append(v.Subscriptions, sv)
		}
	}
	return out
}

// list answers GET /admin/api/events. Broker failures are reported per topic, so one
// unreadable topic does not hide the others.
func (e *eventsAPI) list(c *fiber.Ctx) error {
	byName := e.declared()
	topics := make([]*TopicView, 0, len(byName))
	for _, v := range byName {
		topics = append(topics, v)
	}
	sort.Slice(topics, func(i, j int) bool { return topics[i].Topic < topics[j].Topic })
	if e.insp != nil {
		ctx, cancel := context.WithTimeout(c.UserContext(), brokerTimeout)
		defer cancel()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8) // a few topics at a time: each is several broker round trips
		for _, v := range topics {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := e.stats(ctx, v); err != nil {
					v.Error = err.Error()
					e.cfg.Logger.Warn("reading topic statistics", "topic", v.Topic, "err", err)
				}
			}()
		}
		wg.Wait()
	}
	return c.JSON(fiber.Map{"inspectable": e.insp != nil, "topics": topics})
}

// stats fills v's counts and its subscriptions' lag from the broker.
func (e *eventsAPI) stats(ctx context.Context, v *TopicView) error {
	st, err := e.insp.TopicStats(ctx, v.Topic, groups(v.Subscriptions))
	if err != nil {
		return err
	}
	v.Exists, v.Messages, v.Partitions = st.Exists, st.Messages, st.Partitions
	fill(v.Subscriptions, st.Groups)
	dst, err := e.insp.TopicStats(ctx, v.DLQ.Topic, groups(v.DLQ.Subscriptions))
	if err != nil {
		return err
	}
	v.DLQ.Exists, v.DLQ.Messages = dst.Exists, dst.Messages
	fill(v.DLQ.Subscriptions, dst.Groups)
	return nil
}

func groups(subs []SubscriptionView) []string {
	var out []string
	for _, s := range subs {
		out = append(out, s.Group)
	}
	return out
}

func fill(subs []SubscriptionView, gs []bus.GroupStats) {
	for i := range subs {
		for _, g := range gs {
			if g.Group == subs[i].Group {
				subs[i].Known, subs[i].Lag = g.Known, g.Lag
				if g.Pending >= 0 {
					p := g.Pending
					subs[i].Pending = &p
				}
			}
		}
	}
}

// target resolves :topic to a declared topic and its dead-letter topic, answering the
// request itself when it cannot be served.
func (e *eventsAPI) target(c *fiber.Ctx) (topic, dlq string, ok bool) {
	if e.insp == nil {
		_ = gateway.Error(c, 501, "inspect_unsupported", "this host's event bus cannot list or remove stored messages")
		return "", "", false
	}
	topic = strings.TrimSuffix(c.Params("topic"), bus.DLQSuffix)
	if _, declared := e.declared()[topic]; !declared {
		_ = gateway.Error(c, 404, "unknown_topic", "no active plugin declares the topic "+strconv.Quote(topic))
		return "", "", false
	}
	return topic, bus.DLQTopic(topic), true
}

// parked answers GET /admin/api/events/dlq/:topic with the oldest parked messages.
func (e *eventsAPI) parked(c *fiber.Ctx) error {
	topic, dlq, ok := e.target(c)
	if !ok {
		return nil
	}
	limit := min(max(c.QueryInt("limit", 50), 1), 500)
	ctx, cancel := context.WithTimeout(c.UserContext(), brokerTimeout)
	defer cancel()
	st, err := e.insp.TopicStats(ctx, dlq, nil)
	if err != nil {
		return e.brokerError(c, err)
	}
	msgs, err := e.insp.Peek(ctx, dlq, limit)
	if err != nil {
		return e.brokerError(c, err)
	}
	out := make([]ParkedView, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, parkedView(topic, m))
	}
	return c.JSON(fiber.Map{"topic": topic, "dlq": dlq, "total": st.Messages, "limit": limit, "messages": out})
}

// parkedView describes a dead letter for an operator: the Retrying headers as fields, the
// event envelope's metadata, and the payload as JSON when it is JSON.
func parkedView(topic string, s bus.Stored) ParkedView {
	h := s.Headers
	v := ParkedView{ID: s.ID, Topic: h[bus.HeaderDLQTopic], Group: h[bus.HeaderDLQGroup], Error: h[bus.HeaderDLQError],
		ParkedAt: s.Time, MessageID: s.Message.ID, Removable: s.Removable, Size: len(s.Value)}
	if v.Topic == "" {
		v.Topic = topic
	}
	v.Attempts, _ = strconv.Atoi(h[bus.HeaderDLQAttempts])
	if t, err := time.Parse(time.RFC3339Nano, h[bus.HeaderDLQTime]); err == nil {
		v.ParkedAt = t
	}
	if len(s.Key) > 0 {
		v.Key = string(s.Key)
		if !utf8.Valid(s.Key) {
			v.Key = "base64:" + base64.StdEncoding.EncodeToString(s.Key)
		}
	}
	for k, val := range h {
		if !strings.HasPrefix(k, "keel-dlq-") {
			if v.Headers == nil {
				v.Headers = map[string]string{}
			}
			v.Headers[k] = val
		}
	}
	var env events.Envelope
	switch {
	case json.Unmarshal(s.Value, &env) == nil && env.ID != "" && len(env.Payload) > 0:
		v.Event = &EventRef{ID: env.ID, Type: env.Type, Tenant: env.Tenant, Source: env.Source, Time: env.Time, RequestID: env.RequestID}
		v.Payload = env.Payload
	case json.Valid(s.Value):
		v.Payload = s.Value
	case utf8.Valid(s.Value):
		v.PayloadText = string(s.Value)
	default:
		v.PayloadBase64 = base64.StdEncoding.EncodeToString(s.Value)
	}
	return v
}

// replay answers POST .../:id/replay: it republishes the parked message to its topic (a new
// message, so every group subscribed receives it with a fresh attempt count) and then removes
// the parked copy. The replay has a stable message id, so if removing fails and the operator
// replays again, JetStream drops the second publish as a duplicate; once removed, a repeat
// answers "gone" and publishes nothing.
func (e *eventsAPI) replay(c *fiber.Ctx) error {
	topic, dlq, ok := e.target(c)
	if !ok {
		return nil
	}
	id := c.Params("id")
	ctx, cancel := context.WithTimeout(c.UserContext(), brokerTimeout)
	defer cancel()
	s, done, err := e.lookup(ctx, c, dlq, id)
	if done || err != nil {
		return err
	}
	to, m, err := bus.ReplayOf(dlq, s)
	if err != nil || to != topic {
		return gateway.Error(c, 500, "replay_failed", "cannot derive the original topic of "+dlq)
	}
	if err := e.cfg.Bus.Publish(ctx, to, m); err != nil {
		return gateway.Error(c, 502, "publish_failed", "republishing to "+to+" failed, the message stays parked: "+err.Error())
	}
	if err := e.insp.Remove(ctx, dlq, id); err != nil && !errors.Is(err, bus.ErrGone) {
		e.cfg.Logger.Error("replayed a dead letter but could not remove it", "topic", dlq, "id", id, "err", err)
		return gateway.Error(c, 502, "remove_failed", "the message was republished to "+to+" but is still parked ("+err.Error()+
			"); replaying it again is safe: the republished copy has a stable message id")
	}
	e.audited(c, "event.replay", dlq, s)
	return c.JSON(fiber.Map{"result": "replayed", "topic": to, "id": id, "message_id": m.ID})
}

// discard answers POST .../:id/discard: the parked message is removed and not processed.
func (e *eventsAPI) discard(c *fiber.Ctx) error {
	_, dlq, ok := e.target(c)
	if !ok {
		return nil
	}
	id := c.Params("id")
	ctx, cancel := context.WithTimeout(c.UserContext(), brokerTimeout)
	defer cancel()
	s, done, err := e.lookup(ctx, c, dlq, id)
	if done || err != nil {
		return err
	}
	if err := e.insp.Remove(ctx, dlq, id); err != nil && !errors.Is(err, bus.ErrGone) {
		return e.brokerError(c, err)
	}
	e.audited(c, "event.discard", dlq, s)
	return c.JSON(fiber.Map{"result": "discarded", "id": id})
}

// lookup reads the parked message id. done is true when the request was answered: the
// message is gone already (replayed or discarded before, which a repeated request finds, so
// it answers 200 with result "gone"), or it cannot be removed, or the broker failed.
func (e *eventsAPI) lookup(ctx context.Context, c *fiber.Ctx, dlq, id string) (s bus.Stored, done bool, err error) {
	s, err = e.insp.Get(ctx, dlq, id)
	switch {
	case errors.Is(err, bus.ErrGone):
		return s, true, c.JSON(fiber.Map{"result": "gone", "id": id,
			"message": "no longer parked: it was replayed or discarded already, or retention expired it"})
	case err != nil:
		return s, true, e.brokerError(c, err)
	case !s.Removable:
		return s, true, gateway.Error(c, 409, "not_removable", "the broker cannot remove this message yet: "+
			"Kafka deletes only the oldest records of a partition, so replay or discard the older messages of its partition first")
	}
	return s, false, nil
}

func (e *eventsAPI) brokerError(c *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, bus.ErrNotFound):
		return gateway.Error(c, 404, "message_not_found", err.Error())
	case errors.Is(err, bus.ErrUnsupported):
		return gateway.Error(c, 409, "unsupported_by_broker", err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return gateway.Error(c, 504, "broker_timeout", err.Error())
	}
	e.cfg.Logger.Warn("event bus call from the admin API failed", "path", c.Path(), "err", err)
	return gateway.Error(c, 502, "broker_error", err.Error())
}

func (e *eventsAPI) audited(c *fiber.Ctx, action, dlq string, s bus.Stored) {
	if e.cfg.Audit == nil {
		return
	}
	detail := map[string]any{"message_id": s.Message.ID, "group": s.Headers[bus.HeaderDLQGroup], "error": s.Headers[bus.HeaderDLQError]}
	e.cfg.Audit(action, actor(c), dlq+"/"+s.ID, gateway.RequestID(c), detail)
}
