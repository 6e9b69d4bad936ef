package capabilities

import (
	"context"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/host/internal/runtime"
)

// Field tags of keel:metrics/v1.record.
const (
	metricName  = 1
	metricOp    = 2
	metricValue = 3
	metricLabel = 4 // repeated, label values in declaration order
)

// Metric operations.
const (
	opAdd     = 0 // counter or gauge
	opSet     = 1 // gauge
	opObserve = 2 // histogram
)

// maxSeriesPerMetric bounds label cardinality so a plugin cannot exhaust host memory
// through metric labels.
const maxSeriesPerMetric = 1000

// Metrics provides keel:metrics/v1 and owns the collectors plugins declare. Each
// plugin metric is exported as keel_plugin_<name> with the constant label plugin.
type Metrics struct {
	reg prometheus.Registerer
	mu  sync.RWMutex
	by  map[string]*pluginMetrics // by plugin name
}

type pluginMetrics struct {
	decls      []manifest.MetricCap
	collectors map[string]*metric
}

type metric struct {
	decl   manifest.MetricCap
	col    prometheus.Collector
	series sync.Map // label key -> struct{}, for the cardinality cap
	count  int64
	mu     sync.Mutex
}

// NewMetrics creates the capability.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{reg: reg, by: map[string]*pluginMetrics{}}
}

// Register (re)declares a plugin's metrics, called on activation. Collectors whose
// declaration is unchanged are kept, so counters survive a hot swap.
func (ms *Metrics) Register(m *manifest.Manifest) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	old := ms.by[m.Name]
	next := &pluginMetrics{decls: m.Capabilities.Metrics, collectors: map[string]*metric{}}
	for _, d := range m.Capabilities.Metrics {
		if old != nil {
			if prev, ok := old.collectors[d.Name]; ok && sameDecl(prev.decl, d) {
				next.collectors[d.Name] = prev
				continue
			}
		}
		name := "keel_plugin_" + d.Name
		opts := prometheus.Opts{Name: name, Help: d.Help, ConstLabels: prometheus.Labels{"plugin": m.Name}}
		var col prometheus.Collector
		switch d.Type {
		case "counter":
			col = prometheus.NewCounterVec(prometheus.CounterOpts(opts), d.Labels)
		case "gauge":
			col = prometheus.NewGaugeVec(prometheus.GaugeOpts(opts), d.Labels)
		case "histogram":
			b := d.Buckets
			if len(b) == 0 {
				b = prometheus.DefBuckets
			}
			col = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: d.Help, ConstLabels: opts.ConstLabels, Buckets: b}, d.Labels)
		}
		if old != nil {
			if prev, ok := old.collectors[d.Name]; ok {
				ms.reg.Unregister(prev.col)
			}
		}
		if err := ms.reg.Register(col); err != nil {
			return fmt.Errorf("plugin %s: metric %s: %w", m.Name, d.Name, err)
		}
		next.collectors[d.Name] = &metric{decl: d, col: col}
	}
	if old != nil {
		for name, prev := range old.collectors {
			if _, kept := next.collectors[name]; !kept {
				ms.reg.Unregister(prev.col)
			}
		}
	}
	ms.by[m.Name] = next
	return nil
}

func sameDecl(a, b manifest.MetricCap) bool {
	if a.Type != b.Type || a.Help != b.Help || len(a.Labels) != len(b.Labels) || len(a.Buckets) != len(b.Buckets) {
		return false
	}
	for i := range a.Labels {
		if a.Labels[i] != b.Labels[i] {
			return false
		}
	}
	for i := range a.Buckets {
		if a.Buckets[i] != b.Buckets[i] {
			return false
		}
	}
	return true
}

// Funcs returns the host functions.
func (ms *Metrics) Funcs() []runtime.HostFunc {
	return []runtime.HostFunc{{Module: "keel:metrics/v1", Name: "record", Fn: ms.record}}
}

func (ms *Metrics) record(_ context.Context, call *runtime.Call, in []byte) ([]byte, error) {
	f, err := decode(in)
	if err != nil {
		return nil, err
	}
	name := f.String(metricName)
	ms.mu.RLock()
	pm := ms.by[call.Manifest().Name]
	var m *metric
	if pm != nil {
		m = pm.collectors[name]
	}
	ms.mu.RUnlock()
	if m == nil {
		return nil, runtime.Errorf(wire.CodeDenied, "plugin %s does not declare metric %q", call.Manifest().Name, name)
	}
	op, err := f.Int(metricOp, opAdd)
	if err != nil {
		return nil, runtime.Errorf(wire.CodeMalformed, "op: %v", err)
	}
	v, err := f.Float(metricValue, 1)
	if err != nil {
		return nil, runtime.Errorf(wire.CodeMalformed, "value: %v", err)
	}
	raw := f.All(metricLabel)
	if len(raw) != len(m.decl.Labels) {
		return nil, runtime.Errorf(wire.CodeInvalid, "metric %s takes %d label values, got %d", name, len(m.decl.Labels), len(raw))
	}
	labels := make([]string, len(raw))
	key := ""
	for i, r := range raw {
		if len(r) > 128 {
			return nil, runtime.Errorf(wire.CodeInvalid, "label value longer than 128 bytes")
		}
		labels[i] = string(r)
		key += labels[i] + "\x00"
	}
	if _, seen := m.series.Load(key); !seen {
		m.mu.Lock()
		if _, seen := m.series.Load(key); !seen {
			if m.count >= maxSeriesPerMetric {
				m.mu.Unlock()
				return nil, runtime.Errorf(wire.CodeRateLimited, "metric %s already has %d series", name, maxSeriesPerMetric)
			}
			m.series.Store(key, struct{}{})
			m.count++
		}
		m.mu.Unlock()
	}
	switch c := m.col.(type) {
	case *prometheus.CounterVec:
		if op != opAdd || v < 0 {
			return nil, runtime.Errorf(wire.CodeInvalid, "counter %s only supports adding a non-negative value", name)
		}
		c.WithLabelValues(labels...).Add(v)
	case *prometheus.GaugeVec:
		switch op {
		case opAdd:
			c.WithLabelValues(labels...).Add(v)
		case opSet:
			c.WithLabelValues(labels...).Set(v)
		default:
			return nil, runtime.Errorf(wire.CodeInvalid, "gauge %s supports add and set", name)
		}
	case *prometheus.HistogramVec:
		if op != opObserve {
			return nil, runtime.Errorf(wire.CodeInvalid, "histogram %s only supports observe", name)
		}
		c.WithLabelValues(labels...).Observe(v)
	}
	return nil, nil
}
