package httpout

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Policy says where a plugin may send requests. The zero value allows
// nothing.
type Policy struct {
	// AllowedHosts lists host patterns, matched case-insensitively and
	// ignoring a trailing dot:
	//
	//	"api.example.com"      that host, any port
	//	"api.example.com:8443" that host, port 8443 only
	//	"*.example.com"        any subdomain at any depth, not example.com itself
	//	"203.0.113.7", "[2001:db8::1]", "[2001:db8::1]:443"  IP literals
	//	"*"                    any host; the address rules still apply
	//
	// Names must be ASCII; write internationalised names in punycode.
	AllowedHosts []string
	// AllowedSchemes lists the URL schemes allowed; only "https" and "http"
	// are possible. Empty means https only.
	AllowedSchemes []string
	// AllowPrivate lets requests reach loopback, private (RFC 1918, ULA),
	// link-local, CGNAT and other non-public unicast addresses, for plugins
	// that call services inside the cluster and for tests. Cloud metadata,
	// unspecified, multicast and reserved addresses stay refused.
	AllowPrivate bool
}

// hostRule is one compiled AllowedHosts pattern.
type hostRule struct {
	any      bool   // "*"
	wildcard bool   // "*.suffix": name holds the suffix
	name     string // normalised host name or canonical IP
	port     string // "" for any port
}

// compiledPolicy is a Policy checked once and kept in a form that is cheap to
// match; it never changes after New.
type compiledPolicy struct {
	rules        []hostRule
	http, https  bool
	allowPrivate bool
}

// Validate reports the patterns and schemes in p that are malformed. A
// [Client] built from an invalid policy ignores the bad entries, so they
// deny; Validate lets the host reject a manifest before that happens.
func (p Policy) Validate() error {
	_, errs := compilePolicy(p)
	return errors.Join(errs...)
}

func compilePolicy(p Policy) (compiledPolicy, []error) {
	var errs []error
	cp := compiledPolicy{allowPrivate: p.AllowPrivate}
	if len(p.AllowedSchemes) == 0 {
		cp.https = true
	}
	for _, s := range p.AllowedSchemes {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "https":
			cp.https = true
		case "http":
			cp.http = true
		default:
			errs = append(errs, fmt.Errorf("%w: scheme %q (only http and https)", ErrInvalidPolicy, s))
		}
	}
	for _, pat := range p.AllowedHosts {
		r, err := parsePattern(pat)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cp.rules = append(cp.rules, r)
	}
	return cp, errs
}

func parsePattern(pat string) (hostRule, error) {
	bad := func(why string) (hostRule, error) {
		return hostRule{}, fmt.Errorf("%w: host pattern %q: %s", ErrInvalidPolicy, pat, why)
	}
	host, port, err := splitPatternPort(strings.TrimSpace(pat))
	if err != nil {
		return bad(err.Error())
	}
	r := hostRule{port: port}
	switch {
	case host == "*":
		r.any = true
		return r, nil
	case strings.HasPrefix(host, "*."):
		r.wildcard = true
		host = host[2:]
	}
	if strings.Contains(host, "*") {
		return bad(`"*" may only be the whole pattern or its first label`)
	}
	name, isIP, ok := normalizeHost(host)
	if !ok {
		return bad("not a valid host name or IP address")
	}
	if isIP && r.wildcard {
		return bad("wildcards cannot be combined with an IP address")
	}
	r.name = name
	return r, nil
}

// splitPatternPort separates an optional port from a pattern, accepting bare
// IPv6 literals, which have colons but no port.
func splitPatternPort(s string) (host, port string, err error) {
	if s == "" {
		return "", "", errors.New("empty")
	}
	switch {
	case strings.HasPrefix(s, "["):
		if strings.HasSuffix(s, "]") {
			return s[1 : len(s)-1], "", nil
		}
		host, port, err = net.SplitHostPort(s)
	case strings.Count(s, ":") == 1:
		host, port, err = net.SplitHostPort(s)
	default:
		return s, "", nil
	}
	if err != nil {
		return "", "", err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return "", "", fmt.Errorf("bad port %q", port)
	}
	return host, port, nil
}

// normalizeHost lowercases a host name and removes one trailing dot, or
// canonicalises an IP literal (IPv4-mapped IPv6 becomes IPv4). ok is false
// for anything that is neither a plausible DNS name nor an IP without zone.
func normalizeHost(h string) (name string, isIP, ok bool) {
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.Zone() != "" {
			return "", true, false
		}
		return ip.Unmap().String(), true, true
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" || len(h) > 253 {
		return "", false, false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return "", false, false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", false, false
			}
		}
	}
	return h, false, true
}

func (r hostRule) matches(host string, isIP bool, port string) bool {
	if r.port != "" && r.port != port {
		return false
	}
	switch {
	case r.any:
		return true
	case r.wildcard:
		return !isIP && len(host) > len(r.name) && strings.HasSuffix(host, r.name) && host[len(host)-len(r.name)-1] == '.'
	}
	return host == r.name
}

// checkURL applies the scheme and host rules to u, the URL the transport
// will connect to (u.Hostname() is exactly what it dials).
func (cp *compiledPolicy) checkURL(u *url.URL) error {
	switch scheme := strings.ToLower(u.Scheme); {
	case scheme == "https" && cp.https, scheme == "http" && cp.http:
	default:
		return fmt.Errorf("%w: %q", ErrSchemeNotAllowed, u.Scheme)
	}
	if u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%w: URL has no host", ErrInvalidRequest)
	}
	host, isIP, ok := normalizeHost(u.Hostname())
	if !ok {
		return fmt.Errorf("%w: %q is not a valid host", ErrHostNotAllowed, u.Hostname())
	}
	port := u.Port()
	if port == "" {
		port = "443"
		if strings.EqualFold(u.Scheme, "http") {
			port = "80"
		}
	}
	for _, r := range cp.rules {
		if r.matches(host, isIP, port) {
			if isIP {
				// Refuse IP literals here already, for a clearer error
				// than the dialer's; the dialer checks again.
				if err := cp.checkAddr(netip.MustParseAddr(host)); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrHostNotAllowed, net.JoinHostPort(host, port))
}
