// Command keelbench runs Keel's benchmarks and prints each figure beside its native
// Go baseline, measured in the same run, as a ratio. It is what `make bench` runs;
// results are recorded in bench/RESULTS.md.
//
// The runner lives under host/ because it drives the host's internal packages
// directly; the baselines it compares against live in bench/native.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	goruntime "runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"time"
)

// record prints one result row.
func record(name, value, baseline, ratio, target string) {
	fmt.Printf("%-52s %-26s %-26s %-10s %s\n", name, value, baseline, ratio, target)
}

func main() {
	only := flag.String("only", "", "comma-separated scenarios to run (roundtrip,http,memory,load,sql,cache,events-nats,events-kafka,swap,platform); empty: all")
	dur := flag.Duration("duration", 5*time.Second, "duration of each HTTP load phase")
	conns := flag.Int("connections", 32, "concurrent HTTP connections")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	ctx := context.Background()

	want := func(s string) bool { return *only == "" || strings.Contains(","+*only+",", ","+s+",") }
	fmt.Printf("keelbench  %s  %s/%s  GOMAXPROCS=%d  %s\n\n", goruntime.Version(), goruntime.GOOS, goruntime.GOARCH,
		goruntime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("%-52s %-26s %-26s %-10s %s\n", "scenario", "keel", "native / reference", "ratio", "target")
	fmt.Println(strings.Repeat("-", 140))
	var failed []string
	run := func(name string, f func() error) {
		if !want(name) {
			return
		}
		if err := f(); err != nil {
			failed = append(failed, name+": "+err.Error())
			fmt.Printf("%-52s FAILED: %v\n", name, err)
		}
	}
	run("roundtrip", func() error { return benchRoundTrip(ctx, logger) })
	run("http", func() error { return benchHTTP(ctx, logger, *dur, *conns) })
	run("memory", func() error { return benchMemory(ctx, logger) })
	run("load", func() error { return benchLoad(ctx, logger) })
	run("sql", func() error { return benchSQL(ctx, logger) })
	run("cache", func() error { return benchCache(ctx, logger) })
	run("events-nats", func() error { return benchEvents(ctx, logger, "NATS JetStream, embedded") })
	run("events-kafka", func() error { return benchEventsKafka(ctx, logger) })
	run("swap", func() error { return benchSwap(ctx, logger, *dur, 8) })
	run("platform", func() error { return benchPlatform(ctx, logger, *dur, *conns) })
	if len(failed) > 0 {
		fmt.Fprintf(os.Stderr, "\n%d scenario(s) failed:\n  %s\n", len(failed), strings.Join(failed, "\n  "))
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// percentile returns the p-th percentile (0..100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

func sortDurations(d []time.Duration) { sort.Slice(d, func(i, j int) bool { return d[i] < d[j] }) }

func us(d time.Duration) string { return fmt.Sprintf("%.2f µs", float64(d.Nanoseconds())/1000) }
func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
