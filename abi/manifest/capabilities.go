package manifest

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Capabilities lists what a plugin may use beyond computing. Everything not declared
// is denied at call time with the "denied" error code.
type Capabilities struct {
	// SQL gives the plugin its own PostgreSQL schema and role, and a transaction per
	// invocation.
	SQL bool `json:"sql,omitempty"`
	// Cache enables the key/value cache, namespaced by plugin and tenant.
	Cache *CacheCap `json:"cache,omitempty"`
	// Publish lists the topics the plugin may publish to.
	Publish []PublishCap `json:"publish,omitempty"`
	// Subscribe lists the topics delivered to the plugin's keel_event export.
	Subscribe []SubscribeCap `json:"subscribe,omitempty"`
	// HTTP allows outbound HTTP requests to the listed hosts only.
	HTTP *HTTPCap `json:"http,omitempty"`
	// Config lists the settings the plugin may read.
	Config []ConfigCap `json:"config,omitempty"`
	// Call lists the plugins whose routes this plugin may call through the host.
	Call []string `json:"call,omitempty"`
	// Metrics declares the plugin's own metrics.
	Metrics []MetricCap `json:"metrics,omitempty"`
}

// CacheCap configures the cache capability.
type CacheCap struct {
	// Classes adds or overrides TTL classes, e.g. {"catalog": "30m"}. The platform
	// classes (session 1h, auth 15m, user 5m, config 24h, short 1m, default 10m) are
	// always available.
	Classes map[string]string `json:"classes,omitempty"`
}

// PublishCap declares one topic the plugin publishes.
type PublishCap struct {
	Topic      string `json:"topic"`
	Partitions int    `json:"partitions,omitempty"`
}

// SubscribeCap declares one subscription.
type SubscribeCap struct {
	Topic string `json:"topic"`
	// Group is the consumer group; defaults to the plugin name so that every host
	// running the plugin shares the work.
	Group string `json:"group,omitempty"`
	// MaxAttempts before the event is parked in the topic's dead-letter topic.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Broadcast delivers every event to every host (each host consumes with its own
	// group, Group + "-" + host id) instead of to one host of the group: for work that
	// is local to a host, such as invalidating an in-process cache.
	Broadcast bool `json:"broadcast,omitempty"`
}

// HTTPCap configures outbound HTTP.
type HTTPCap struct {
	// Hosts allowed, exact ("api.example.com") or wildcard ("*.example.com"),
	// optionally with a port.
	Hosts []string `json:"hosts"`
	// AllowHTTP permits plain http:// (https only otherwise).
	AllowHTTP bool `json:"allow_http,omitempty"`
	// AllowPrivate permits loopback and private addresses; for development only.
	AllowPrivate bool `json:"allow_private,omitempty"`
}

// ConfigCap declares one setting.
type ConfigCap struct {
	Key string `json:"key"`
	// Secret values are never logged or shown by the admin API.
	Secret bool `json:"secret,omitempty"`
	// Required settings must be present when the plugin is activated.
	Required bool   `json:"required,omitempty"`
	Default  string `json:"default,omitempty"`
}

// MetricCap declares one plugin metric. Its exported name is keel_plugin_<plugin>_<name>
// with the label plugin added.
type MetricCap struct {
	Name    string    `json:"name"`
	Type    string    `json:"type"` // counter, gauge or histogram
	Help    string    `json:"help"`
	Labels  []string  `json:"labels,omitempty"`
	Buckets []float64 `json:"buckets,omitempty"`
}

var (
	topicRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,199}$`)
	configKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	metricRE    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	hostRE      = regexp.MustCompile(`^(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?$`)
	groupRE     = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
)

// ValidTopic reports whether s is a valid topic name.
func ValidTopic(s string) bool {
	return topicRE.MatchString(s) && !strings.HasSuffix(s, ".") && !strings.Contains(s, "..") && !strings.HasSuffix(s, ".dlq")
}

// CacheTTL returns the TTL of a class for this plugin, or false if unknown.
func (c *CacheCap) CacheTTL(class string, platform func(string) (time.Duration, bool)) (time.Duration, bool) {
	if c != nil {
		if v, ok := c.Classes[class]; ok {
			d, err := time.ParseDuration(v)
			return d, err == nil
		}
	}
	return platform(class)
}

// Publishes reports whether the plugin declared topic for publishing.
func (c *Capabilities) Publishes(topic string) bool {
	for _, p := range c.Publish {
		if p.Topic == topic {
			return true
		}
	}
	return false
}

// ConfigKey returns the declaration of a setting.
func (c *Capabilities) ConfigKey(key string) (ConfigCap, bool) {
	for _, k := range c.Config {
		if k.Key == key {
			return k, true
		}
	}
	return ConfigCap{}, false
}

// Calls reports whether the plugin may call plugin name.
func (c *Capabilities) Calls(name string) bool {
	for _, n := range c.Call {
		if n == name {
			return true
		}
	}
	return false
}

// Metric returns the declaration of a metric.
func (c *Capabilities) Metric(name string) (MetricCap, bool) {
	for _, m := range c.Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return MetricCap{}, false
}

func (c *Capabilities) validate(self string) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Cache != nil {
		if len(c.Cache.Classes) > 50 {
			bad("capabilities.cache.classes: more than 50")
		}
		for k, v := range c.Cache.Classes {
			d, err := time.ParseDuration(v)
			if !configKeyRE.MatchString(k) || err != nil || d <= 0 || d > 30*24*time.Hour {
				bad("capabilities.cache.classes[%q] = %q: want a lower-case name and a duration between 1ns and 720h", k, v)
			}
		}
	}
	seen := map[string]bool{}
	for i, p := range c.Publish {
		if !ValidTopic(p.Topic) {
			bad("capabilities.publish[%d].topic %q: want lower-case letters, digits and . _ -, not ending in .dlq", i, p.Topic)
		}
		if seen[p.Topic] {
			bad("capabilities.publish[%d].topic %q: declared twice", i, p.Topic)
		}
		seen[p.Topic] = true
		if p.Partitions < 0 || p.Partitions > 256 {
			bad("capabilities.publish[%d].partitions %d: must be between 0 and 256", i, p.Partitions)
		}
	}
	seen = map[string]bool{}
	for i := range c.Subscribe {
		s := &c.Subscribe[i]
		if !ValidTopic(s.Topic) && !(strings.HasSuffix(s.Topic, ".dlq") && ValidTopic(strings.TrimSuffix(s.Topic, ".dlq"))) {
			bad("capabilities.subscribe[%d].topic %q: invalid topic name", i, s.Topic)
		}
		if s.Group == "" {
			s.Group = self
		}
		if !groupRE.MatchString(s.Group) {
			bad("capabilities.subscribe[%d].group %q: want a lower-case identifier", i, s.Group)
		}
		if seen[s.Topic] {
			bad("capabilities.subscribe[%d].topic %q: subscribed twice", i, s.Topic)
		}
		seen[s.Topic] = true
		if s.MaxAttempts == 0 {
			s.MaxAttempts = 5
		}
		if s.MaxAttempts < 1 || s.MaxAttempts > 100 {
			bad("capabilities.subscribe[%d].max_attempts %d: must be between 1 and 100", i, s.MaxAttempts)
		}
	}
	if c.HTTP != nil {
		if len(c.HTTP.Hosts) == 0 || len(c.HTTP.Hosts) > 100 {
			bad("capabilities.http.hosts: list between 1 and 100 hosts")
		}
		for i, h := range c.HTTP.Hosts {
			if h != "*" && !hostRE.MatchString(h) {
				bad("capabilities.http.hosts[%d] %q: want a lower-case host name, optionally *.domain and :port", i, h)
			}
		}
	}
	seen = map[string]bool{}
	for i, k := range c.Config {
		if !configKeyRE.MatchString(k.Key) {
			bad("capabilities.config[%d].key %q: want a lower-case identifier", i, k.Key)
		}
		if seen[k.Key] {
			bad("capabilities.config[%d].key %q: declared twice", i, k.Key)
		}
		seen[k.Key] = true
		if k.Secret && k.Default != "" {
			bad("capabilities.config[%d] %q: a secret cannot have a default", i, k.Key)
		}
	}
	for i, n := range c.Call {
		if !ValidName(n) {
			bad("capabilities.call[%d] %q: not a plugin name", i, n)
		}
		if n == self {
			bad("capabilities.call[%d]: a plugin cannot call itself through the host", i)
		}
	}
	seen = map[string]bool{}
	for i, m := range c.Metrics {
		if !metricRE.MatchString(m.Name) {
			bad("capabilities.metrics[%d].name %q: want a lower-case identifier", i, m.Name)
		}
		if seen[m.Name] {
			bad("capabilities.metrics[%d].name %q: declared twice", i, m.Name)
		}
		seen[m.Name] = true
		switch m.Type {
		case "counter", "gauge":
			if len(m.Buckets) > 0 {
				bad("capabilities.metrics[%d] %q: buckets are only for histograms", i, m.Name)
			}
		case "histogram":
			for j := 1; j < len(m.Buckets); j++ {
				if m.Buckets[j] <= m.Buckets[j-1] {
					bad("capabilities.metrics[%d] %q: buckets must increase", i, m.Name)
					break
				}
			}
		default:
			bad("capabilities.metrics[%d].type %q: want counter, gauge or histogram", i, m.Type)
		}
		if m.Help == "" || len(m.Help) > 500 {
			bad("capabilities.metrics[%d] %q: help is required (at most 500 characters)", i, m.Name)
		}
		if len(m.Labels) > 10 {
			bad("capabilities.metrics[%d] %q: at most 10 labels", i, m.Name)
		}
		for _, l := range m.Labels {
			if !metricRE.MatchString(l) || l == "plugin" {
				bad("capabilities.metrics[%d] %q: label %q is not a valid label name (and \"plugin\" is reserved)", i, m.Name, l)
			}
		}
	}
	return errs
}
