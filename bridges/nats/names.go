package nats

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/keelhq/keel/bridges/bus"
)

// escape turns a bus name ([a-z0-9._-]) into a JetStream stream or consumer name, which must not
// contain '.'. The mapping is injective and stays readable: '.' becomes '_' and '_' becomes "_U"
// (bus names are lower case, so "_U" cannot come from anything else).
func escape(name string) string {
	var b strings.Builder
	b.Grow(len(name) + 4)
	for i := 0; i < len(name); i++ {
		switch c := name[i]; c {
		case '.':
			b.WriteByte('_')
		case '_':
			b.WriteString("_U")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// naming maps bus names to JetStream names within one namespace.
type naming struct{ ns string }

// stream returns the stream holding topic, for example "KEEL_orders_created".
func (n naming) stream(topic string) string { return strings.ToUpper(n.ns) + "_" + escape(topic) }

// subject returns the subject topic is published on, for example "keel.events.orders.created".
func (n naming) subject(topic string) string { return n.ns + ".events." + topic }

// durable returns the durable consumer name of group.
func (n naming) durable(group string) string { return escape(group) }

var namespaceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

func validNamespace(ns string) error {
	if !namespaceRE.MatchString(ns) {
		return fmt.Errorf("nats: %w: namespace %q: want [a-z0-9][a-z0-9-]{0,31}", bus.ErrInvalidName, ns)
	}
	return nil
}
