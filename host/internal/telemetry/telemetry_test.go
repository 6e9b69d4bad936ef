package telemetry

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The cached in-flight gauges are the registry's series: what the gateway adds and
// subtracts through them is what /metrics exports, per plugin.
func TestInFlightGaugesAreTheExportedSeries(t *testing.T) {
	m := New()
	a, b := m.InFlight("a"), m.InFlight("b")
	if m.InFlight("a") != a {
		t.Fatal("InFlight returned a different gauge for the same plugin")
	}
	a.Inc()
	a.Inc()
	b.Inc()
	m.InFlight("a").Dec()
	for _, tc := range []struct {
		plugin string
		want   float64
	}{{"a", 1}, {"b", 1}, {"c", 0}} {
		if got := testutil.ToFloat64(m.httpInFlight.WithLabelValues(tc.plugin)); got != tc.want {
			t.Errorf("plugin %s: in flight %v, want %v", tc.plugin, got, tc.want)
		}
	}
}
