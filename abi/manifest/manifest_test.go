package manifest

import (
	"strings"
	"testing"
)

const good = `{"name":"example","version":"1.2.3","abi":1,
 "routes":[{"method":"GET","path":"/hello/:name","public":true},
           {"method":"POST","path":"/echo","permission":"example.echo"},
           {"method":"GET","path":"/files/*","read_only":true}],
 "limits":{"pool_max":4}}`

func TestParseValid(t *testing.T) {
	m, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "example" || len(m.Routes) != 3 || m.Routes[0].ReadOnly || !m.Routes[2].ReadOnly {
		t.Fatalf("unexpected manifest %+v", m)
	}
	l := m.Limits
	if l.PoolMax != 4 || l.PoolMin != 1 || l.MemoryMiB != DefaultMemoryMiB || l.CallTimeoutMS != DefaultCallTimeoutMS ||
		l.MaxRequestBytes != DefaultMaxRequestBytes || l.MaxResponseBytes != DefaultMaxResponseBytes {
		t.Fatalf("defaults not applied: %+v", l)
	}
}

func TestParsePrefetch(t *testing.T) {
	m, err := Parse([]byte(`{"name":"ab","version":"1.0.0","abi":1,"capabilities":{"sql":true},
		"routes":[{"method":"GET","path":"/a/:tenant/b/:id","read_only":true,"prefetch":{"sql":"SELECT * FROM b WHERE id = $1 AND t = $2","params":["id","tenant"]}}],"limits":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	if pf := m.Routes[0].Prefetch; pf == nil || pf.SQL == "" || len(pf.Params) != 2 || pf.Params[1] != "tenant" {
		t.Fatalf("prefetch %+v", m.Routes[0].Prefetch)
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name, json, want string
	}{
		{"unknown field", `{"name":"ab","version":"1.0.0","abi":1,"limits":{},"colour":"red"}`, `unknown field "colour"`},
		{"read_only not a bool", `{"name":"ab","version":"1.0.0","abi":1,"routes":[{"method":"GET","path":"/x","read_only":"yes"}],"limits":{}}`, `read_only`},
		{"unknown limit", `{"name":"ab","version":"1.0.0","abi":1,"limits":{"cpu":1}}`, `unknown field "cpu"`},
		{"bad name", `{"name":"Ab","version":"1.0.0","abi":1,"limits":{}}`, `name "Ab"`},
		{"bad version", `{"name":"ab","version":"1.0","abi":1,"limits":{}}`, `version "1.0"`},
		{"abi too new", `{"name":"ab","version":"1.0.0","abi":2,"limits":{}}`, `upgrade the host`},
		{"abi zero", `{"name":"ab","version":"1.0.0","abi":0,"limits":{}}`, `abi 0`},
		{"bad method", `{"name":"ab","version":"1.0.0","abi":1,"routes":[{"method":"get","path":"/x"}],"limits":{}}`, `method must be`},
		{"no slash", `{"name":"ab","version":"1.0.0","abi":1,"routes":[{"method":"GET","path":"x"}],"limits":{}}`, `must start with '/'`},
		{"dup shape", `{"name":"ab","version":"1.0.0","abi":1,"routes":[{"method":"GET","path":"/a/:id"},{"method":"GET","path":"/a/:key"}],"limits":{}}`, `same method and path shape`},
		{"star middle", `{"name":"ab","version":"1.0.0","abi":1,"routes":[{"method":"GET","path":"/a/*/b"}],"limits":{}}`, `last segment`},
		{"public+perm", `{"name":"ab","version":"1.0.0","abi":1,"routes":[{"method":"GET","path":"/a","public":true,"permission":"x"}],"limits":{}}`, `cannot require`},
		{"memory", `{"name":"ab","version":"1.0.0","abi":1,"limits":{"memory_mib":5000}}`, `limits.memory_mib 5000`},
		{"pool order", `{"name":"ab","version":"1.0.0","abi":1,"limits":{"pool_min":5,"pool_max":2}}`, `limits.pool_min 5`},
		{"trailing", `{"name":"ab","version":"1.0.0","abi":1,"limits":{}} {}`, `trailing data`},
		{"not json", `name: ab`, `invalid character`},
		{"bad topic", `{"name":"ab","version":"1.0.0","abi":1,"capabilities":{"publish":[{"topic":"Bad Topic"}]},"limits":{}}`, `capabilities.publish[0].topic`},
		{"dlq publish", `{"name":"ab","version":"1.0.0","abi":1,"capabilities":{"publish":[{"topic":"x.dlq"}]},"limits":{}}`, `not ending in .dlq`},
		{"unknown cap", `{"name":"ab","version":"1.0.0","abi":1,"capabilities":{"files":true},"limits":{}}`, `unknown field "files"`},
		{"bad host", `{"name":"ab","version":"1.0.0","abi":1,"capabilities":{"http":{"hosts":["http://x"]}},"limits":{}}`, `capabilities.http.hosts[0]`},
		{"self call", `{"name":"ab","version":"1.0.0","abi":1,"capabilities":{"call":["ab"]},"limits":{}}`, `cannot call itself`},
		{"metric type", `{"name":"ab","version":"1.0.0","abi":1,"capabilities":{"metrics":[{"name":"x","type":"summary","help":"h"}]},"limits":{}}`, `want counter, gauge or histogram`},
		{"metric label", `{"name":"ab","version":"1.0.0","abi":1,"capabilities":{"metrics":[{"name":"x","type":"counter","help":"h","labels":["plugin"]}]},"limits":{}}`, `reserved`},
		{"secret default", `{"name":"ab","version":"1.0.0","abi":1,"capabilities":{"config":[{"key":"pw","secret":true,"default":"x"}]},"limits":{}}`, `cannot have a default`},
		{"cache class", `{"name":"ab","version":"1.0.0","abi":1,"capabilities":{"cache":{"classes":{"x":"forever"}}},"limits":{}}`, `capabilities.cache.classes`},
		{"type", `{"name":"ab","version":"1.0.0","abi":"1","limits":{}}`, `cannot unmarshal`},
		{"prefetch not read_only", `{"name":"ab","version":"1.0.0","abi":1,"capabilities":{"sql":true},"routes":[{"method":"GET","path":"/a/:id","prefetch":{"sql":"SELECT 1","params":["id"]}}],"limits":{}}`, `prefetch needs a read_only route`},
		{"prefetch without sql", `{"name":"ab","version":"1.0.0","abi":1,"routes":[{"method":"GET","path":"/a/:id","read_only":true,"prefetch":{"sql":"SELECT 1"}}],"limits":{}}`, `prefetch needs the sql capability`},
		{"prefetch empty", `{"name":"ab","version":"1.0.0","abi":1,"capabilities":{"sql":true},"routes":[{"method":"GET","path":"/a/:id","read_only":true,"prefetch":{"sql":"  "}}],"limits":{}}`, `prefetch.sql must be`},
		{"prefetch param", `{"name":"ab","version":"1.0.0","abi":1,"capabilities":{"sql":true},"routes":[{"method":"GET","path":"/a/:id","read_only":true,"prefetch":{"sql":"SELECT 1","params":["key"]}}],"limits":{}}`, `"key" is not a parameter of the path`},
		{"prefetch field", `{"name":"ab","version":"1.0.0","abi":1,"capabilities":{"sql":true},"routes":[{"method":"GET","path":"/a/:id","read_only":true,"prefetch":{"query":"SELECT 1"}}],"limits":{}}`, `unknown field "query"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestCapabilitiesDefaults(t *testing.T) {
	m, err := Parse([]byte(`{"name":"audit","version":"1.0.0","abi":1,"capabilities":{
		"sql":true,"cache":{},"publish":[{"topic":"audit.alerts"}],"subscribe":[{"topic":"audit.events"}],
		"http":{"hosts":["*.example.com","hooks.slack.com:443"]},"config":[{"key":"retention_days","default":"90"}],
		"call":["configuration"],"metrics":[{"name":"records_total","type":"counter","help":"Records.","labels":["kind"]}]},"limits":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	c := m.Capabilities
	if c.Subscribe[0].Group != "audit" || c.Subscribe[0].MaxAttempts != 5 {
		t.Fatalf("subscribe defaults: %+v", c.Subscribe[0])
	}
	if !c.Publishes("audit.alerts") || c.Publishes("audit.events") || !c.Calls("configuration") {
		t.Fatal("capability lookups wrong")
	}
	if k, ok := c.ConfigKey("retention_days"); !ok || k.Default != "90" {
		t.Fatal("config lookup wrong")
	}
}

func TestParseTooLarge(t *testing.T) {
	if _, err := Parse(make([]byte, MaxSize+1)); err == nil {
		t.Fatal("oversized manifest accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(`{"name":"ab","version":"1.0.0","abi":1,"routes":[{"method":"GET","path":"/a/:id/*"}],"limits":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		// Whatever parses must be valid and stable under re-validation.
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed manifest fails re-validation: %v", err)
		}
		if m.Limits.PoolMin > m.Limits.PoolMax || m.Limits.MemoryMiB < 8 {
			t.Fatalf("limits out of range after parse: %+v", m.Limits)
		}
	})
}
