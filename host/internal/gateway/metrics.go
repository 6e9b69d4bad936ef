package gateway

import (
	"bytes"

	"github.com/gofiber/fiber/v2"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// metrics serves every series in the Prometheus text format.
func (g *Gateway) metrics(c *fiber.Ctx) error {
	mfs, err := g.cfg.Metrics.Registry().Gather()
	if err != nil {
		g.cfg.Logger.Warn("gathering metrics", "err", err)
	}
	return writeFamilies(c, mfs)
}

// pluginMetrics serves only the series labelled plugin=<name>, so each plugin can be
// scraped as its own target.
func (g *Gateway) pluginMetrics(c *fiber.Ctx) error {
	name := c.Params("name")
	if g.cfg.Plugins.Lookup(name) == nil {
		return Error(c, 404, "plugin_not_found", "no active plugin named "+name)
	}
	mfs, err := g.cfg.Metrics.Registry().Gather()
	if err != nil {
		g.cfg.Logger.Warn("gathering metrics", "err", err)
	}
	out := mfs[:0]
	for _, mf := range mfs {
		var kept []*dto.Metric
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "plugin" && l.GetValue() == name {
					kept = append(kept, m)
					break
				}
			}
		}
		if len(kept) > 0 {
			mf.Metric = kept
			out = append(out, mf)
		}
	}
	return writeFamilies(c, out)
}

func writeFamilies(c *fiber.Ctx, mfs []*dto.MetricFamily) error {
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	c.Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	return c.Send(buf.Bytes())
}
