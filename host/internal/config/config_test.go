package config

import (
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c, err := Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.DataDir != ".keel" || !c.AccessLog || c.ShutdownTimeout != 30*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestEnvAndFlags(t *testing.T) {
	c, err := Load([]string{"KEEL_HTTP_ADDR=127.0.0.1:9000", "KEEL_KAFKA_BROKERS=a:9092, b:9092", "PATH=/bin"},
		[]string{"--log-level", "warn"})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:9000" || len(c.KafkaBrokers) != 2 || c.LogLevel.String() != "WARN" {
		t.Fatalf("%+v", c)
	}
	c, err = Load([]string{"KEEL_HTTP_ADDR=127.0.0.1:9000"}, []string{"--http-addr", ":7000"})
	if err != nil || c.HTTPAddr != ":7000" {
		t.Fatalf("flag should win: %v %+v", err, c)
	}
}

func TestRejects(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"KEEL_HTTP_ADRR=:1"}, nil, "unknown setting KEEL_HTTP_ADRR"},
		{[]string{"KEEL_HTTP_ADDR=8080"}, nil, "KEEL_HTTP_ADDR"},
		{[]string{"KEEL_DATABASE_URL=mysql://x"}, nil, "want a postgres:// URL"},
		{[]string{"KEEL_ADMIN_TOKEN=short"}, nil, "at least 16"},
		{[]string{"KEEL_LOG_LEVEL=loud"}, nil, "KEEL_LOG_LEVEL"},
		{[]string{"KEEL_KAFKA_BROKERS=nohost"}, nil, "want host:port"},
		{nil, []string{"--nope"}, "flag provided but not defined"},
		{[]string{"KEEL_SHUTDOWN_TIMEOUT=-1s"}, nil, "positive duration"},
	} {
		_, err := Load(tc.env, tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: got %v, want %q", tc.env, tc.args, err, tc.want)
		}
	}
	_, err := Load([]string{"KEEL_ADMIN_TOKEN=short"}, nil)
	if strings.Contains(err.Error(), "short") {
		t.Errorf("secret value leaked into the error: %v", err)
	}
}
