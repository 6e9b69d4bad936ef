// Package telemetry owns the host's Prometheus collectors. Every series that concerns
// a plugin carries the label "plugin", which is what /plugins/{name}/metrics filters on.
package telemetry

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the host's collectors. Create one per process with New.
type Metrics struct {
	reg           *prometheus.Registry
	httpCache     sync.Map // httpKey -> *httpSeries
	inflightCache sync.Map // plugin -> prometheus.Gauge

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	httpInFlight *prometheus.GaugeVec
	callDuration *prometheus.HistogramVec
	failures     *prometheus.CounterVec
	prefetches   *prometheus.CounterVec
	poolSize     *prometheus.GaugeVec
	poolInUse    *prometheus.GaugeVec
	memory       *prometheus.GaugeVec
	instantiate  *prometheus.HistogramVec
	pluginLogs   *prometheus.CounterVec
}

// New creates the collectors and registers them, with the Go and process collectors,
// on a fresh registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keel_http_requests_total", Help: "HTTP requests served, by plugin, route, method and status code.",
		}, []string{"plugin", "route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keel_http_request_duration_seconds", Help: "HTTP request latency including the plugin call.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"plugin", "route", "method"}),
		httpInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keel_http_requests_in_flight", Help: "HTTP requests being served, by plugin.",
		}, []string{"plugin"}),
		callDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keel_plugin_call_duration_seconds", Help: "Duration of one call into a plugin export, including waiting for an instance.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"plugin", "export"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keel_plugin_failures_total", Help: "Failed plugin calls by reason: trap, timeout, memory, exit, panic, oversized, malformed, pool_exhausted, init.",
		}, []string{"plugin", "reason"}),
		prefetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keel_plugin_prefetch_total", Help: "Declared route lookups (manifest prefetch) the host ran before a call, by outcome: ok, failed.",
		}, []string{"plugin", "outcome"}),
		poolSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keel_plugin_pool_instances", Help: "Live wasm instances in the plugin's pool.",
		}, []string{"plugin", "version"}),
		poolInUse: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keel_plugin_pool_in_use", Help: "Instances currently serving a call.",
		}, []string{"plugin", "version"}),
		memory: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keel_plugin_memory_bytes", Help: "Linear memory held by the plugin's instances.",
		}, []string{"plugin", "version"}),
		instantiate: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keel_plugin_instantiate_seconds", Help: "Time to instantiate and initialise one instance.",
			Buckets: prometheus.ExponentialBuckets(.0005, 2, 14),
		}, []string{"plugin"}),
		pluginLogs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keel_plugin_log_records_total", Help: "Log records written by plugins, by level.",
		}, []string{"plugin", "level"}),
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.httpRequests, m.httpDuration, m.httpInFlight, m.callDuration, m.failures, m.prefetches, m.poolSize, m.poolInUse,
		m.memory, m.instantiate, m.pluginLogs)
	return m
}

// Registry returns the registry for /metrics and for registering further collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

type httpKey struct{ plugin, route, method, code string }

type httpSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// HTTPRequest records one finished HTTP request. The series handles are cached per
// label set, because looking labels up costs more than the rest of the accounting.
func (m *Metrics) HTTPRequest(plugin, route, method, code string, d time.Duration) {
	k := httpKey{plugin, route, method, code}
	s, ok := m.httpCache.Load(k)
	if !ok {
		s, _ = m.httpCache.LoadOrStore(k, &httpSeries{
			count:    m.httpRequests.WithLabelValues(plugin, route, method, code),
			duration: m.httpDuration.WithLabelValues(plugin, route, method),
		})
	}
	hs := s.(*httpSeries)
	hs.count.Inc()
	hs.duration.Observe(d.Seconds())
}

// InFlight returns the in-flight gauge of a plugin. The gateway asks for it on every
// request, so the gauge is looked up in the vector once per plugin and cached.
func (m *Metrics) InFlight(plugin string) prometheus.Gauge {
	if g, ok := m.inflightCache.Load(plugin); ok {
		return g.(prometheus.Gauge)
	}
	g, _ := m.inflightCache.LoadOrStore(plugin, m.httpInFlight.WithLabelValues(plugin))
	return g.(prometheus.Gauge)
}

// Failure counts one failed call.
func (m *Metrics) Failure(plugin, reason string) { m.failures.WithLabelValues(plugin, reason).Inc() }

// Prefetch counts one declared route lookup run before a call (outcome ok or failed).
func (m *Metrics) Prefetch(plugin, outcome string) {
	m.prefetches.WithLabelValues(plugin, outcome).Inc()
}

// Pool publishes a pool's size, in-use count and total linear memory.
func (m *Metrics) Pool(plugin, version string, size, inUse int, memBytes uint64) {
	m.poolSize.WithLabelValues(plugin, version).Set(float64(size))
	m.poolInUse.WithLabelValues(plugin, version).Set(float64(inUse))
	m.memory.WithLabelValues(plugin, version).Set(float64(memBytes))
}

// ForgetPool removes a closed generation's pool series.
func (m *Metrics) ForgetPool(plugin, version string) {
	m.poolSize.DeleteLabelValues(plugin, version)
	m.poolInUse.DeleteLabelValues(plugin, version)
	m.memory.DeleteLabelValues(plugin, version)
}

// Instantiated records the time one instance took to start.
func (m *Metrics) Instantiated(plugin string, d time.Duration) {
	m.instantiate.WithLabelValues(plugin).Observe(d.Seconds())
}

// PluginLog counts one log record from a plugin.
func (m *Metrics) PluginLog(plugin, level string) { m.pluginLogs.WithLabelValues(plugin, level).Inc() }

// FailureCounter returns the failure counter of one plugin and reason, for tests and
// the dashboard.
func (m *Metrics) FailureCounter(plugin, reason string) prometheus.Counter {
	return m.failures.WithLabelValues(plugin, reason)
}

// PoolInUseGauge returns the in-use gauge of one generation, for updating on every
// call without a label lookup.
func (m *Metrics) PoolInUseGauge(plugin, version string) prometheus.Gauge {
	return m.poolInUse.WithLabelValues(plugin, version)
}

// CallObserver returns the call-duration histogram of one plugin export, for
// observing without a label lookup per call.
func (m *Metrics) CallObserver(plugin, export string) prometheus.Observer {
	return m.callDuration.WithLabelValues(plugin, export)
}
