package httpout

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func mustCompile(t testing.TB, p Policy) compiledPolicy {
	t.Helper()
	cp, errs := compilePolicy(p)
	if len(errs) > 0 {
		t.Fatalf("compilePolicy(%+v): %v", p, errors.Join(errs...))
	}
	return cp
}

func TestPolicyMatching(t *testing.T) {
	exact := Policy{AllowedHosts: []string{"api.example.com"}}
	dotted := Policy{AllowedHosts: []string{"API.Example.com."}}
	wild := Policy{AllowedHosts: []string{"*.example.com"}}
	ports := Policy{AllowedHosts: []string{"pay.example.com:8443", "web.example.com:443", "plain.example.com:80"}, AllowedSchemes: []string{"https", "http"}}
	ips := Policy{AllowedHosts: []string{"203.0.113.7", "[2001:db8::1]", "2001:db8::2", "[2001:db8::3]:8443", "127.0.0.1", "169.254.169.254"}}
	ipsPrivate := ips
	ipsPrivate.AllowPrivate = true
	anyHost := Policy{AllowedHosts: []string{"*"}, AllowedSchemes: []string{"http", "https"}}
	httpOnly := Policy{AllowedHosts: []string{"api.example.com"}, AllowedSchemes: []string{"HTTP"}}

	tests := []struct {
		name   string
		policy Policy
		url    string
		want   error // nil: allowed
	}{
		{"exact", exact, "https://api.example.com/v1?q=1", nil},
		{"exact upper case", exact, "https://API.EXAMPLE.COM/", nil},
		{"exact trailing dot", exact, "https://api.example.com./", nil},
		{"exact any port", exact, "https://api.example.com:8443/", nil},
		{"pattern upper case and dot", dotted, "https://api.example.com/", nil},
		{"parent domain", exact, "https://example.com/", ErrHostNotAllowed},
		{"subdomain of exact", exact, "https://x.api.example.com/", ErrHostNotAllowed},
		{"suffix attack", exact, "https://api.example.com.evil.test/", ErrHostNotAllowed},
		{"prefix attack", exact, "https://xapi.example.com/", ErrHostNotAllowed},
		{"userinfo trick", exact, "https://api.example.com@evil.test/", ErrHostNotAllowed},
		{"fragment trick", exact, "https://evil.test#@api.example.com", ErrHostNotAllowed},
		{"encoded dot", exact, "https://api%2eexample%2ecom/", ErrInvalidRequest}, // net/url refuses escapes in names
		{"encoded suffix attack", exact, "https://api.example.com%2eevil.test/", ErrInvalidRequest},
		{"http not opted in", exact, "http://api.example.com/", ErrSchemeNotAllowed},
		{"ftp", anyHost, "ftp://api.example.com/", ErrSchemeNotAllowed},
		{"scheme upper case", exact, "HTTPS://api.example.com/", nil},
		{"http only", httpOnly, "https://api.example.com/", ErrSchemeNotAllowed},
		{"http only ok", httpOnly, "http://api.example.com/", nil},
		{"no host", exact, "https:///path", ErrInvalidRequest},
		{"non-ascii host", wild, "https://bücher.example.com/", ErrHostNotAllowed},
		{"empty label", wild, "https://a..example.com/", ErrHostNotAllowed},

		{"wildcard one level", wild, "https://a.example.com/", nil},
		{"wildcard deep", wild, "https://a.b.example.com/", nil},
		{"wildcard upper case dot", wild, "https://A.EXAMPLE.COM./", nil},
		{"wildcard excludes apex", wild, "https://example.com/", ErrHostNotAllowed},
		{"wildcard hyphen attack", wild, "https://evil-example.com/", ErrHostNotAllowed},
		{"wildcard glued attack", wild, "https://aexample.com/", ErrHostNotAllowed},
		{"wildcard suffix attack", wild, "https://a.example.com.evil.test/", ErrHostNotAllowed},

		{"port match", ports, "https://pay.example.com:8443/", nil},
		{"port default mismatch", ports, "https://pay.example.com/", ErrHostNotAllowed},
		{"port other mismatch", ports, "https://pay.example.com:9443/", ErrHostNotAllowed},
		{"port 443 implicit", ports, "https://web.example.com/", nil},
		{"port 443 explicit", ports, "https://web.example.com:443/", nil},
		{"port 443 on http", ports, "http://web.example.com/", ErrHostNotAllowed},
		{"port 80 implicit http", ports, "http://plain.example.com/", nil},

		{"ipv4 literal", ips, "https://203.0.113.7/", nil},
		{"ipv4 other", ips, "https://203.0.113.8/", ErrHostNotAllowed},
		{"ipv6 literal", ips, "https://[2001:db8::1]/", nil},
		{"ipv6 literal port", ips, "https://[2001:db8::1]:8443/", nil},
		{"ipv6 non-canonical", ips, "https://[2001:DB8:0:0::1]/", nil},
		{"ipv6 bare pattern", ips, "https://[2001:db8::2]/", nil},
		{"ipv6 port pattern", ips, "https://[2001:db8::3]:8443/", nil},
		{"ipv6 port pattern mismatch", ips, "https://[2001:db8::3]/", ErrHostNotAllowed},
		{"ipv6 zone", ips, "https://[fe80::1%25eth0]/", ErrHostNotAllowed},
		{"loopback literal", ips, "https://127.0.0.1/", ErrAddressNotAllowed},
		{"loopback mapped", ips, "https://[::ffff:127.0.0.1]/", ErrAddressNotAllowed},
		{"loopback literal private", ipsPrivate, "https://127.0.0.1/", nil},
		{"metadata literal", ips, "https://169.254.169.254/", ErrAddressNotAllowed},
		{"metadata even private", ipsPrivate, "https://169.254.169.254/latest/meta-data", ErrAddressNotAllowed},
		{"ip not matched by name wildcard", wild, "https://203.0.113.7/", ErrHostNotAllowed},

		{"any host", anyHost, "https://anything.test/", nil},
		{"any host private ip", anyHost, "http://10.0.0.1/", ErrAddressNotAllowed},
		{"any host v6 loopback", anyHost, "http://[::1]:8080/", ErrAddressNotAllowed},
		{"any host decimal ip", anyHost, "http://2130706433/", nil}, // a name here; the dialer judges what it resolves to
		{"deny by default", Policy{}, "https://api.example.com/", ErrHostNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp := mustCompile(t, tt.policy)
			u, err := url.Parse(tt.url)
			if err != nil {
				err = ErrInvalidRequest // what Do returns for it
			} else {
				err = cp.checkURL(u)
			}
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("checkURL(%q) = %v, want %v", tt.url, err, tt.want)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	good := Policy{
		AllowedHosts:   []string{"api.example.com", "*.example.com", "a.b:8443", "203.0.113.7", "[2001:db8::1]:443", "::1", "*", "*:443", "under_score.example"},
		AllowedSchemes: []string{"https", "HTTP"},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	for _, bad := range []string{"", " ", "*.", "a.*.com", "*example.com", "**.example.com", "exa mple.com", "*.203.0.113.7",
		"api.example.com:0", "api.example.com:65536", "api.example.com:x", "api.example.com:08443", "[::1", "fe80::1%eth0",
		"a..b", strings.Repeat("a", 64) + ".com", "bücher.example", "https://api.example.com"} {
		err := Policy{AllowedHosts: []string{bad}}.Validate()
		if !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("Validate(%q) = %v, want ErrInvalidPolicy", bad, err)
		}
	}
	if err := (Policy{AllowedSchemes: []string{"ftp"}}).Validate(); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("Validate(ftp) = %v", err)
	}
	// Invalid entries deny; valid ones next to them still work.
	cp, _ := compilePolicy(Policy{AllowedHosts: []string{"a.*.com", "ok.example"}})
	if err := cp.checkURL(&url.URL{Scheme: "https", Host: "ok.example"}); err != nil {
		t.Errorf("valid entry next to an invalid one: %v", err)
	}
}

func TestAddressRules(t *testing.T) {
	tests := []struct {
		ip      string
		reason  string // "" for public
		private bool   // allowed with AllowPrivate
	}{
		{"8.8.8.8", "", true},
		{"203.0.113.7", "", true},
		{"2606:4700::1111", "", true},
		{"127.0.0.1", "loopback", true},
		{"127.255.0.9", "loopback", true},
		{"::1", "loopback", true},
		{"::ffff:127.0.0.1", "loopback", true},
		{"10.1.2.3", "private", true},
		{"172.16.0.1", "private", true},
		{"172.31.255.255", "private", true},
		{"172.32.0.1", "", true},
		{"192.168.1.1", "private", true},
		{"fd12:3456::1", "private", true},
		{"169.254.1.1", "link-local", true},
		{"fe80::1", "link-local", true},
		{"100.64.0.1", "carrier-grade NAT", true},
		{"100.127.255.255", "carrier-grade NAT", true},
		{"100.128.0.1", "", true},
		{"198.18.0.1", "benchmarking", true},
		{"192.0.0.8", "IETF protocol assignment", true},
		{"169.254.169.254", "cloud metadata", false},
		{"::ffff:169.254.169.254", "cloud metadata", false},
		{"fd00:ec2::254", "cloud metadata", false},
		{"0.0.0.0", "unspecified", false},
		{"::", "unspecified", false},
		{"0.1.2.3", "this-network", false},
		{"224.0.0.1", "multicast", false},
		{"ff02::1", "multicast", false},
		{"255.255.255.255", "reserved", false},
		{"240.0.0.1", "reserved", false},
		{"64:ff9b::7f00:1", "IPv6 address embedding a loopback IPv4 address", true},
		{"64:ff9b::a9fe:a9fe", "IPv6 address embedding a cloud metadata IPv4 address", false},
		{"64:ff9b::808:808", "", true},
		{"2002:7f00:1::1", "IPv6 address embedding a loopback IPv4 address", true},
		{"2002:0a00:0001::1", "IPv6 address embedding a private IPv4 address", true},
		{"::7f00:1", "IPv6 address embedding a loopback IPv4 address", true},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo tunnel", true},
		{"fec0::1", "site-local", true},
	}
	strict := mustCompile(t, Policy{})
	lax := mustCompile(t, Policy{AllowPrivate: true})
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		reason, _ := classify(ip)
		if reason != tt.reason {
			t.Errorf("classify(%s) = %q, want %q", tt.ip, reason, tt.reason)
		}
		if err := strict.checkAddr(ip); (err == nil) != (tt.reason == "") || err != nil && !errors.Is(err, ErrAddressNotAllowed) {
			t.Errorf("strict checkAddr(%s) = %v", tt.ip, err)
		}
		if err := lax.checkAddr(ip); (err == nil) != tt.private {
			t.Errorf("AllowPrivate checkAddr(%s) = %v, want allowed=%v", tt.ip, err, tt.private)
		}
	}
}

// FuzzPolicyURL checks the matcher against net/url's own reading of the URL,
// which is what the transport dials: whatever the fuzzer feeds in, an
// allowed URL's host is one the policy names.
func FuzzPolicyURL(f *testing.F) {
	for _, s := range []string{
		"https://api.example.com/", "https://a.b.good.test:8443/x", "https://api.example.com@evil.test/",
		"https://evil.test#@api.example.com", "https://API.EXAMPLE.COM./", "https://[::1]/", "https://203.0.113.7/",
		"https://api.example.com%2eevil.test/", "https://good.test/", "http://api.example.com/", "https://xgood.test/",
		"https://127.0.0.1/", "https://[::ffff:203.0.113.7]:443/",
	} {
		f.Add(s)
	}
	cp := mustCompile(f, Policy{AllowedHosts: []string{"api.example.com", "*.good.test", "203.0.113.7:443"}})
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		if cp.checkURL(u) != nil {
			return
		}
		if !strings.EqualFold(u.Scheme, "https") {
			t.Fatalf("%q allowed with scheme %q", raw, u.Scheme)
		}
		host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
		if ip, err := netip.ParseAddr(host); err == nil {
			port := u.Port()
			if ip.Unmap().String() != "203.0.113.7" || (port != "" && port != "443") {
				t.Fatalf("%q allowed: IP %s port %q", raw, ip, port)
			}
			return
		}
		if host != "api.example.com" && !strings.HasSuffix(host, ".good.test") {
			t.Fatalf("%q allowed: host %q is not in the policy", raw, host)
		}
	})
}

// FuzzHostPattern checks that a pattern never matches more than it says.
func FuzzHostPattern(f *testing.F) {
	f.Add("*.example.com", "a.example.com", "443")
	f.Add("api.example.com:8443", "API.example.com.", "8443")
	f.Add("[::1]", "::1", "80")
	f.Add("*", "x", "1")
	f.Fuzz(func(t *testing.T, pattern, host, port string) {
		r, err := parsePattern(pattern)
		if err != nil {
			return
		}
		name, isIP, ok := normalizeHost(host)
		if !ok || !r.matches(name, isIP, port) {
			return
		}
		if r.port != "" && r.port != port {
			t.Fatalf("%q matched port %q", pattern, port)
		}
		switch {
		case r.any:
		case r.wildcard:
			if isIP || !strings.HasSuffix(name, "."+r.name) {
				t.Fatalf("%q matched %q", pattern, host)
			}
		default:
			if name != r.name {
				t.Fatalf("%q matched %q", pattern, host)
			}
		}
	})
}
