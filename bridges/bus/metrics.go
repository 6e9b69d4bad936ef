package bus

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what Retrying does, per topic and consumer group. A nil *Metrics counts nothing.
type Metrics struct {
	deliveredC, retriedC, deadLetteredC, failedC *prometheus.CounterVec
}

// NewMetrics creates the bus counters and registers them with reg, which may be nil. If the
// counters are already registered with reg (a second bus after a hot swap), the registered ones
// are reused, so the series continue instead of failing start-up.
//
//	keel_bus_delivered_total{topic,group}      handler succeeded
//	keel_bus_retried_total{topic,group}        an attempt failed and another one follows
//	keel_bus_dead_lettered_total{topic,group}  message parked in topic.dlq
//	keel_bus_failed_total{topic,group}         message handed back to the broker unprocessed
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	labels := []string{"topic", "group"}
	vec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keel", Subsystem: "bus", Name: name, Help: help}, labels)
	}
	m := &Metrics{
		deliveredC:    vec("delivered_total", "Messages whose handler succeeded."),
		retriedC:      vec("retried_total", "Failed handler attempts that were retried in-process."),
		deadLetteredC: vec("dead_lettered_total", "Messages parked in the dead-letter topic after the last attempt."),
		failedC:       vec("failed_total", "Messages handed back to the broker unprocessed (context ended or dead-letter publish failed)."),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []**prometheus.CounterVec{&m.deliveredC, &m.retriedC, &m.deadLetteredC, &m.failedC} {
		if err := reg.Register(*c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, err
			}
			*c = existing
		}
	}
	return m, nil
}

func (m *Metrics) delivered(d Delivery) {
	if m != nil {
		m.deliveredC.WithLabelValues(d.Topic, d.Group).Inc()
	}
}

func (m *Metrics) retried(d Delivery) {
	if m != nil {
		m.retriedC.WithLabelValues(d.Topic, d.Group).Inc()
	}
}

func (m *Metrics) deadLettered(d Delivery) {
	if m != nil {
		m.deadLetteredC.WithLabelValues(d.Topic, d.Group).Inc()
	}
}

func (m *Metrics) failed(d Delivery) {
	if m != nil {
		m.failedC.WithLabelValues(d.Topic, d.Group).Inc()
	}
}
