// Package config reads the host's settings from KEEL_* environment variables and the
// equivalent command-line flags (flags win). Unknown KEEL_* variables and malformed
// values fail start-up with a message naming the setting, because a mistyped variable
// that is silently ignored is how production outages start.
package config

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config is the host's configuration.
type Config struct {
	HTTPAddr        string
	DatabaseURL     string
	RedisURL        string
	NATSURL         string
	KafkaBrokers    []string
	AdminToken      string
	PluginsDir      string
	DataDir         string
	LogLevel        slog.Level
	AccessLog       bool
	MaxBodyBytes    int
	ShutdownTimeout time.Duration
	TrustedKeys     string
	JWTPublicKey    string
	CORSOrigins     []string
	TenantRPS       float64
	DevMode         bool
	HostID          string
}

type setting struct {
	env, flag, def, help string
	secret               bool
	apply                func(c *Config, v string) error
}

var settings = []setting{
	{"KEEL_HTTP_ADDR", "http-addr", ":8080", "address the HTTP server listens on", false, func(c *Config, v string) error {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("want host:port: %w", err)
		}
		c.HTTPAddr = v
		return nil
	}},
	{"KEEL_DATABASE_URL", "database-url", "", "PostgreSQL URL (postgres://...)", true, func(c *Config, v string) error {
		if v != "" {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
				return errors.New("want a postgres:// URL")
			}
		}
		c.DatabaseURL = v
		return nil
	}},
	{"KEEL_REDIS_URL", "redis-url", "", "Redis URL (redis://...); unset: in-process cache", true, func(c *Config, v string) error {
		if v != "" {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
				return errors.New("want a redis:// or rediss:// URL")
			}
		}
		c.RedisURL = v
		return nil
	}},
	{"KEEL_NATS_URL", "nats-url", "", "NATS URL (nats://...); unset: embedded NATS with JetStream", true, func(c *Config, v string) error {
		if v != "" {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") {
				return errors.New("want a nats:// or tls:// URL")
			}
		}
		c.NATSURL = v
		return nil
	}},
	{"KEEL_KAFKA_BROKERS", "kafka-brokers", "", "comma-separated host:port list; set: Kafka carries the event topics", false, func(c *Config, v string) error {
		c.KafkaBrokers = nil
		for _, b := range strings.Split(v, ",") {
			if b = strings.TrimSpace(b); b == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(b); err != nil {
				return fmt.Errorf("broker %q: want host:port", b)
			}
			c.KafkaBrokers = append(c.KafkaBrokers, b)
		}
		return nil
	}},
	{"KEEL_ADMIN_TOKEN", "admin-token", "", "bearer token for /admin/api (at least 16 characters)", true, func(c *Config, v string) error {
		if v != "" && len(v) < 16 {
			return errors.New("must be at least 16 characters")
		}
		c.AdminToken = v
		return nil
	}},
	{"KEEL_PLUGINS_DIR", "plugins-dir", "", "directory of plugins activated at boot", false, func(c *Config, v string) error {
		c.PluginsDir = v
		return nil
	}},
	{"KEEL_DATA_DIR", "data-dir", ".keel", "directory for the compilation cache and embedded services' data", false, func(c *Config, v string) error {
		if v == "" {
			return errors.New("must not be empty")
		}
		c.DataDir = v
		return nil
	}},
	{"KEEL_LOG_LEVEL", "log-level", "info", "debug, info, warn or error", false, func(c *Config, v string) error {
		return c.LogLevel.UnmarshalText([]byte(v))
	}},
	{"KEEL_ACCESS_LOG", "access-log", "true", "log one line per HTTP request", false, func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		c.AccessLog = b
		return err
	}},
	{"KEEL_MAX_BODY_BYTES", "max-body-bytes", "16777216", "largest accepted request body", false, func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1024 || n > 1<<30 {
			return errors.New("want an integer between 1024 and 1073741824")
		}
		c.MaxBodyBytes = n
		return nil
	}},
	{"KEEL_TRUSTED_KEYS", "trusted-keys", "", "file or directory of ed25519 public keys (PEM) trusted to sign plugin bundles", false, func(c *Config, v string) error {
		c.TrustedKeys = v
		return nil
	}},
	{"KEEL_JWT_PUBLIC_KEY", "jwt-public-key", "", "standard base64 of the Ed25519 public key that verifies access tokens (unset: non-public routes answer 401)", false, func(c *Config, v string) error {
		if v != "" {
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
			if err != nil || len(b) != 32 {
				return errors.New("want standard base64 of a 32-byte Ed25519 public key")
			}
		}
		c.JWTPublicKey = v
		return nil
	}},
	{"KEEL_CORS_ORIGINS", "cors-origins", "", "comma-separated origins allowed to call the API from browsers (unset: no CORS headers)", false, func(c *Config, v string) error {
		c.CORSOrigins = nil
		for _, o := range strings.Split(v, ",") {
			if o = strings.TrimSpace(o); o == "" {
				continue
			}
			if o != "*" {
				if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
					return fmt.Errorf("origin %q: want scheme://host[:port]", o)
				}
			}
			c.CORSOrigins = append(c.CORSOrigins, o)
		}
		return nil
	}},
	{"KEEL_TENANT_RPS", "tenant-rps", "0", "requests per second allowed per tenant on /api (bursts of twice that); 0 disables", false, func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1e6 {
			return errors.New("want a number between 0 and 1000000")
		}
		c.TenantRPS = f
		return nil
	}},
	{"KEEL_DEV_MODE", "dev-mode", "false", "development: accept unsigned plugin bundles", false, func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		c.DevMode = b
		return err
	}},
	{"KEEL_HOST_ID", "host-id", "", "this host's name in the registry and dashboard (default: the machine's host name)", false, func(c *Config, v string) error {
		if v == "" {
			v, _ = os.Hostname()
		}
		c.HostID = v
		return nil
	}},
	{"KEEL_SHUTDOWN_TIMEOUT", "shutdown-timeout", "30s", "how long SIGTERM waits for in-flight requests", false, func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return errors.New("want a positive duration such as 30s")
		}
		c.ShutdownTimeout = d
		return nil
	}},
}

// Load parses the environment and args (flags without the program name). It returns
// every problem at once.
func Load(environ []string, args []string) (*Config, error) {
	known := map[string]bool{}
	for _, s := range settings {
		known[s.env] = true
	}
	env := map[string]string{}
	var errs []error
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "KEEL_") {
			continue
		}
		if !known[k] && !strings.HasPrefix(k, "KEEL_TEST_") && !strings.HasPrefix(k, "KEEL_PLUGIN_") {
			errs = append(errs, fmt.Errorf("unknown setting %s (known: %s)", k, strings.Join(knownNames(), ", ")))
			continue
		}
		env[k] = v
	}
	fs := flag.NewFlagSet("keel serve", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	vals := map[string]*string{}
	for _, s := range settings {
		def := s.def
		if v, ok := env[s.env]; ok {
			def = v
		}
		vals[s.env] = fs.String(s.flag, def, s.help+" ("+s.env+")")
	}
	if err := fs.Parse(args); err != nil {
		errs = append(errs, err)
	} else if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %v", fs.Args()))
	}
	c := &Config{}
	for _, s := range settings {
		if err := s.apply(c, *vals[s.env]); err != nil {
			shown := *vals[s.env]
			if s.secret {
				shown = "(hidden)"
			}
			errs = append(errs, fmt.Errorf("%s / --%s = %q: %w", s.env, s.flag, shown, err))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("configuration: %w", errors.Join(errs...))
	}
	return c, nil
}

func knownNames() []string {
	var out []string
	for _, s := range settings {
		out = append(out, s.env)
	}
	sort.Strings(out)
	return out
}

// Usage describes every setting, for --help.
func Usage() string {
	var b strings.Builder
	for _, s := range settings {
		fmt.Fprintf(&b, "  --%-18s %-22s %s (default %q)\n", s.flag, s.env, s.help, s.def)
	}
	return b.String()
}

// Environ is os.Environ, named for the call site.
func Environ() []string { return os.Environ() }
