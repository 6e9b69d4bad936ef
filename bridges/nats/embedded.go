package nats

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a NATS server with JetStream running inside this process, the default event bus when
// no external NATS is configured.
type Server struct {
	s *server.Server
}

// ServerOption configures StartEmbedded.
type ServerOption func(*serverConfig)

type serverConfig struct {
	host   string
	port   int
	logger *slog.Logger
}

// WithListen sets the listen address; the default is 127.0.0.1 on a random free port, so the
// embedded server is not reachable from the network unless asked for. Port 0 or -1 picks a
// random port.
func WithListen(host string, port int) ServerOption {
	return func(c *serverConfig) {
		c.host = host
		c.port = port
	}
}

// WithServerLogger routes the server's notices, warnings and errors to l; the default discards
// them.
func WithServerLogger(l *slog.Logger) ServerOption {
	return func(c *serverConfig) {
		if l != nil {
			c.logger = l
		}
	}
}

// StartEmbedded starts a NATS server with JetStream storing its files under dir/nats and waits
// until it accepts connections. Call Shutdown to stop it.
func StartEmbedded(dir string, opts ...ServerOption) (*Server, error) {
	cfg := serverConfig{host: "127.0.0.1", port: server.RANDOM_PORT, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.port == 0 {
		cfg.port = server.RANDOM_PORT
	}
	store := filepath.Join(dir, "nats")
	if err := os.MkdirAll(store, 0o750); err != nil {
		return nil, fmt.Errorf("nats: embedded: store dir: %w", err)
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "keel-embedded",
		Host:       cfg.host,
		Port:       cfg.port,
		JetStream:  true,
		StoreDir:   store,
		NoSigs:     true, // the host owns signal handling
	})
	if err != nil {
		return nil, fmt.Errorf("nats: embedded: %w", err)
	}
	s.SetLoggerV2(slogAdapter{cfg.logger.With(slog.String("component", "nats-server"))}, false, false, false)
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("nats: embedded: server on %s:%d not ready after 10s", cfg.host, cfg.port)
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("nats: embedded: jetstream did not start (store %s)", store)
	}
	return &Server{s: s}, nil
}

// ClientURL returns the URL clients connect to, for Open.
func (s *Server) ClientURL() string { return s.s.ClientURL() }

// Shutdown stops the server and waits until it has flushed its stores.
func (s *Server) Shutdown() {
	s.s.Shutdown()
	s.s.WaitForShutdown()
}

// slogAdapter implements the nats-server logger on top of slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.l.Info(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
