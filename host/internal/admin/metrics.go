package admin

import (
	"context"
	"log/slog"
	"math"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/keelhq/keel/host/internal/gateway"
)

// MetricsConfig configures the read-only admin routes the dashboard polls:
// GET /admin/api/metrics and GET /admin/api/health.
type MetricsConfig struct {
	// Token and AdminJWT are the admin credentials, the same as Config's; with neither
	// the routes answer 503 like the rest of the admin API.
	Token    string
	AdminJWT func(ctx context.Context, token string) (actor string, err error)
	Logger   *slog.Logger
	// Gatherer is the host's Prometheus registry (telemetry.Metrics.Registry). The
	// snapshot is read from it, so the dashboard shows exactly what /metrics exports.
	Gatherer prometheus.Gatherer
	// Readiness returns the host's readiness report (health.Checker.Report); nil makes
	// /admin/api/health answer 503.
	Readiness func(ctx context.Context) any
	// HostID and Started describe this host in the snapshot.
	HostID  string
	Started time.Time
}

// MountMetrics adds GET /admin/api/metrics and GET /admin/api/health to app.
//
// Each route carries the admin authentication itself instead of relying on the
// /admin/api group that Mount installs, so that the routes are protected whatever
// order the two are mounted in; a request the group already authenticated is not
// checked or audited twice.
func MountMetrics(app *fiber.App, cfg MetricsConfig) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &api{cfg: Config{Token: cfg.Token, AdminJWT: cfg.AdminJWT, Logger: cfg.Logger, HostID: cfg.HostID, Started: cfg.Started}}
	m := &metricsAPI{cfg: cfg}
	app.Get("/admin/api/metrics", a.authOnce, m.metrics)
	app.Get("/admin/api/health", a.authOnce, m.health)
}

// authOnce is auth for routes that may sit behind Mount's group middleware.
func (a *api) authOnce(c *fiber.Ctx) error {
	if _, ok := c.Locals(actorKey).(string); ok {
		return c.Next()
	}
	return a.auth(c)
}

type metricsAPI struct{ cfg MetricsConfig }

// MetricsSnapshot is the body of GET /admin/api/metrics. Counters and histograms are
// cumulative since the host started: the dashboard derives rates and percentiles
// from the difference between two snapshots, as Prometheus' rate() and
// histogram_quantile() do, so the host keeps no time series of its own.
type MetricsSnapshot struct {
	// UnixMS is the host's clock when the snapshot was taken; rates divide by the
	// difference of two of these rather than by the browser's polling interval.
	UnixMS  int64                     `json:"unix_ms"`
	Host    HostMetrics               `json:"host"`
	Plugins map[string]*PluginMetrics `json:"plugins"`
}

// HostMetrics is the process-level part of a snapshot.
type HostMetrics struct {
	ID             string  `json:"id"`
	UptimeS        float64 `json:"uptime_s"`
	Goroutines     float64 `json:"goroutines"`
	HeapAllocBytes float64 `json:"heap_alloc_bytes"`
	HeapInuseBytes float64 `json:"heap_inuse_bytes"`
	SysBytes       float64 `json:"sys_bytes"`
	ResidentBytes  float64 `json:"resident_bytes"`
	CPUSeconds     float64 `json:"cpu_seconds"`
	GCCycles       float64 `json:"gc_cycles"`
}

// PluginMetrics is one plugin's part of a snapshot, summed over routes, methods and
// versions unless a field says otherwise.
type PluginMetrics struct {
	// Requests counts HTTP requests by status class: "2xx", "3xx", "4xx", "5xx".
	Requests map[string]float64 `json:"requests"`
	// Routes breaks Requests down by "METHOD /route" ("GET unmatched" for 404s).
	Routes   map[string]map[string]float64 `json:"routes"`
	InFlight float64                       `json:"in_flight"`
	// Latency is the HTTP request latency histogram in seconds.
	Latency Histogram `json:"latency"`
	// Pool is the instance pool, in total and per running version (two during a swap).
	Pool PoolMetrics `json:"pool"`
	// Failures counts failed calls by reason (trap, timeout, memory, ...).
	Failures map[string]float64 `json:"failures"`
	// Logs counts the plugin's log records by level.
	Logs map[string]float64 `json:"logs"`
}

// Histogram is a cumulative Prometheus histogram. Counts[i] is the number of
// observations <= LE[i]; the +Inf bucket, which JSON cannot spell, is Count.
type Histogram struct {
	LE     []float64 `json:"le"`
	Counts []uint64  `json:"counts"`
	Count  uint64    `json:"count"`
	Sum    float64   `json:"sum"`
}

// PoolMetrics is a plugin's instance pool.
type PoolMetrics struct {
	Instances   float64                 `json:"instances"`
	InUse       float64                 `json:"in_use"`
	MemoryBytes float64                 `json:"memory_bytes"`
	Versions    map[string]*PoolVersion `json:"versions"`
}

// PoolVersion is the pool of one running version.
type PoolVersion struct {
	Instances   float64 `json:"instances"`
	InUse       float64 `json:"in_use"`
	MemoryBytes float64 `json:"memory_bytes"`
}

// metrics answers GET /admin/api/metrics[?plugin=NAME]. Without plugin it reports
// every plugin that has a series, which the overview uses for its per-plugin rates.
func (m *metricsAPI) metrics(c *fiber.Ctx) error {
	if m.cfg.Gatherer == nil {
		return gateway.Error(c, 503, "metrics_unavailable", "this host has no metrics registry")
	}
	mfs, err := m.cfg.Gatherer.Gather()
	if err != nil {
		// Gather returns what it could alongside the error; a partial snapshot is
		// more useful to an operator than none.
		m.cfg.Logger.Warn("gathering metrics for the dashboard", "err", err)
	}
	return c.JSON(snapshot(mfs, c.Query("plugin"), m.cfg.HostID, m.cfg.Started, time.Now()))
}

// health answers GET /admin/api/health with the readiness report. It answers 200
// even when the host is not ready: the request itself succeeded, and the report's
// status field says how the host is, which is what the dashboard displays.
func (m *metricsAPI) health(c *fiber.Ctx) error {
	if m.cfg.Readiness == nil {
		return gateway.Error(c, 503, "health_unavailable", "this host does not expose its readiness report to the admin API")
	}
	return c.JSON(m.cfg.Readiness(c.UserContext()))
}

// snapshot builds a MetricsSnapshot from gathered families, keeping only the named
// plugin's series when only is not empty.
func snapshot(mfs []*dto.MetricFamily, only, hostID string, started, now time.Time) *MetricsSnapshot {
	s := &MetricsSnapshot{UnixMS: now.UnixMilli(), Host: HostMetrics{ID: hostID}, Plugins: map[string]*PluginMetrics{}}
	if !started.IsZero() {
		s.Host.UptimeS = now.Sub(started).Seconds()
	}
	if only != "" {
		// Always present, so that a plugin without traffic yet reads as zeros.
		s.Plugins[only] = newPluginMetrics()
	}
	plugin := func(m *dto.Metric) *PluginMetrics {
		name := label(m, "plugin")
		if name == "" || (only != "" && name != only) {
			return nil
		}
		p := s.Plugins[name]
		if p == nil {
			p = newPluginMetrics()
			s.Plugins[name] = p
		}
		return p
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "keel_http_requests_total":
			for _, m := range mf.GetMetric() {
				if p := plugin(m); p != nil {
					class := statusClass(label(m, "code"))
					v := m.GetCounter().GetValue()
					p.Requests[class] += v
					route := label(m, "method") + " " + label(m, "route")
					if p.Routes[route] == nil {
						p.Routes[route] = map[string]float64{}
					}
					p.Routes[route][class] += v
				}
			}
		case "keel_http_request_duration_seconds":
			for _, m := range mf.GetMetric() {
				if p := plugin(m); p != nil {
					p.Latency.add(m.GetHistogram())
				}
			}
		case "keel_http_requests_in_flight":
			for _, m := range mf.GetMetric() {
				if p := plugin(m); p != nil {
					p.InFlight += m.GetGauge().GetValue()
				}
			}
		case "keel_plugin_failures_total":
			for _, m := range mf.GetMetric() {
				if p := plugin(m); p != nil {
					p.Failures[label(m, "reason")] += m.GetCounter().GetValue()
				}
			}
		case "keel_plugin_log_records_total":
			for _, m := range mf.GetMetric() {
				if p := plugin(m); p != nil {
					p.Logs[label(m, "level")] += m.GetCounter().GetValue()
				}
			}
		case "keel_plugin_pool_instances", "keel_plugin_pool_in_use", "keel_plugin_memory_bytes":
			for _, m := range mf.GetMetric() {
				if p := plugin(m); p != nil {
					p.Pool.add(mf.GetName(), label(m, "version"), m.GetGauge().GetValue())
				}
			}
		case "go_goroutines":
			s.Host.Goroutines = gauge(mf)
		case "go_memstats_heap_alloc_bytes":
			s.Host.HeapAllocBytes = gauge(mf)
		case "go_memstats_heap_inuse_bytes":
			s.Host.HeapInuseBytes = gauge(mf)
		case "go_memstats_sys_bytes":
			s.Host.SysBytes = gauge(mf)
		case "process_resident_memory_bytes":
			s.Host.ResidentBytes = gauge(mf)
		case "process_cpu_seconds_total":
			if ms := mf.GetMetric(); len(ms) > 0 {
				s.Host.CPUSeconds = ms[0].GetCounter().GetValue()
			}
		case "go_gc_duration_seconds":
			if ms := mf.GetMetric(); len(ms) > 0 {
				s.Host.GCCycles = float64(ms[0].GetSummary().GetSampleCount())
			}
		case "process_start_time_seconds":
			if started.IsZero() {
				if v := gauge(mf); v > 0 {
					s.Host.UptimeS = now.Sub(time.Unix(0, int64(v*1e9))).Seconds()
				}
			}
		}
	}
	return s
}

func newPluginMetrics() *PluginMetrics {
	return &PluginMetrics{Requests: map[string]float64{}, Routes: map[string]map[string]float64{},
		Latency: Histogram{LE: []float64{}, Counts: []uint64{}}, Pool: PoolMetrics{Versions: map[string]*PoolVersion{}},
		Failures: map[string]float64{}, Logs: map[string]float64{}}
}

// add sums one series into h. Every series of the family shares the bucket layout,
// so buckets are matched by position; a series with another layout (which only a
// change of telemetry.go could produce) is counted in Count and Sum only.
func (h *Histogram) add(src *dto.Histogram) {
	bs := src.GetBucket()
	finite := bs
	if n := len(bs); n > 0 && math.IsInf(bs[n-1].GetUpperBound(), +1) {
		finite = bs[:n-1]
	}
	if len(h.LE) == 0 && h.Count == 0 {
		for _, b := range finite {
			h.LE = append(h.LE, b.GetUpperBound())
			h.Counts = append(h.Counts, 0)
		}
	}
	same := len(finite) == len(h.LE)
	for i := 0; same && i < len(finite); i++ {
		same = finite[i].GetUpperBound() == h.LE[i]
	}
	if same {
		for i, b := range finite {
			h.Counts[i] += b.GetCumulativeCount()
		}
	}
	h.Count += src.GetSampleCount()
	h.Sum += src.GetSampleSum()
}

func (p *PoolMetrics) add(family, version string, v float64) {
	pv := p.Versions[version]
	if pv == nil {
		pv = &PoolVersion{}
		p.Versions[version] = pv
	}
	switch family {
	case "keel_plugin_pool_instances":
		pv.Instances += v
		p.Instances += v
	case "keel_plugin_pool_in_use":
		pv.InUse += v
		p.InUse += v
	case "keel_plugin_memory_bytes":
		pv.MemoryBytes += v
		p.MemoryBytes += v
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func gauge(mf *dto.MetricFamily) float64 {
	if ms := mf.GetMetric(); len(ms) > 0 {
		return ms[0].GetGauge().GetValue()
	}
	return 0
}

// statusClass maps "404" to "4xx"; anything unexpected is "other" rather than lost.
func statusClass(code string) string {
	if len(code) == 3 && code[0] >= '1' && code[0] <= '5' {
		return code[:1] + "xx"
	}
	return "other"
}
