package postgres

import (
	"github.com/prometheus/client_golang/prometheus"
)

// poolCollector reads pgxpool statistics at scrape time, so the numbers are never stale and nothing
// runs between scrapes.
type poolCollector struct {
	db *DB

	acquired, idle, total, constructing, max  *prometheus.Desc
	acquires, emptyAcquires, canceledAcquires *prometheus.Desc
	acquireSeconds, emptyAcquireWaitSeconds   *prometheus.Desc
}

// Collector returns the pool metrics (keel_postgres_pool_*) for registration with Prometheus.
// Register it once per DB.
func (db *DB) Collector() prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("keel_postgres_pool_"+name, help, nil, nil)
	}
	return &poolCollector{
		db:                      db,
		acquired:                d("acquired_conns", "Connections currently borrowed from the pool."),
		idle:                    d("idle_conns", "Idle connections in the pool."),
		total:                   d("total_conns", "Connections in the pool, idle, acquired or being opened."),
		constructing:            d("constructing_conns", "Connections being opened."),
		max:                     d("max_conns", "Configured maximum size of the pool."),
		acquires:                d("acquires_total", "Successful acquisitions of a connection."),
		emptyAcquires:           d("empty_acquires_total", "Acquisitions that had to wait because no connection was idle."),
		canceledAcquires:        d("canceled_acquires_total", "Acquisitions abandoned because their context ended."),
		acquireSeconds:          d("acquire_seconds_total", "Total time spent acquiring connections."),
		emptyAcquireWaitSeconds: d("empty_acquire_wait_seconds_total", "Total time spent waiting for a connection when none was idle."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.constructing, c.max,
		c.acquires, c.emptyAcquires, c.canceledAcquires, c.acquireSeconds, c.emptyAcquireWaitSeconds} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.db.pool.Stat()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	n := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(c.acquired, float64(s.AcquiredConns()))
	g(c.idle, float64(s.IdleConns()))
	g(c.total, float64(s.TotalConns()))
	g(c.constructing, float64(s.ConstructingConns()))
	g(c.max, float64(s.MaxConns()))
	n(c.acquires, float64(s.AcquireCount()))
	n(c.emptyAcquires, float64(s.EmptyAcquireCount()))
	n(c.canceledAcquires, float64(s.CanceledAcquireCount()))
	n(c.acquireSeconds, s.AcquireDuration().Seconds())
	n(c.emptyAcquireWaitSeconds, s.EmptyAcquireWaitTime().Seconds())
}
