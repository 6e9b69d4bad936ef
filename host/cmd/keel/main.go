// Command keel is the Keel host and its operator tool.
//
//	keel serve [flags]     run the host (settings from KEEL_* variables or flags)
//	keel plugin ...        keygen, build, sign, push, list, activate, rollback, deactivate
//	keel migrate           apply the host's database migrations
//	keel version           print the version and ABI level
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/host/internal/config"
	"github.com/keelhq/keel/host/internal/server"
)

// version is set by the linker (-X main.version=...).
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "plugin":
		return pluginCmd(args[1:], stdout, stderr)
	case "migrate":
		return migrateCmd(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "keel %s (ABI level %d)\n", version, manifest.CurrentABI)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "keel: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: keel <command>\n\ncommands:\n  serve     run the host\n  plugin    build, sign, push and operate plugins (keel plugin help)\n  migrate   apply the host's database migrations\n  version   print the version\n\nserve settings:\n%s", config.Usage())
}

func serve(args []string, stderr io.Writer) int {
	cfg, err := config.Load(config.Environ(), args)
	if err != nil {
		fmt.Fprintf(stderr, "keel: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	slog.SetDefault(logger)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	server.Version = version
	srv, err := server.New(ctx, cfg, logger)
	if err != nil {
		logger.Error("start-up failed", "err", err)
		return 1
	}
	if err := srv.Start(ctx); err != nil {
		logger.Error("start-up failed", "err", err)
		return 1
	}
	<-ctx.Done()
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Error("shutdown incomplete", "err", err)
		return 1
	}
	return 0
}
