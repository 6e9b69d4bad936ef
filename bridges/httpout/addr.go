package httpout

import (
	"fmt"
	"net/netip"
)

// addrRange is a block of addresses refused for one reason.
type addrRange struct {
	prefix netip.Prefix
	reason string
	always bool // refused even with AllowPrivate
}

// blockedRanges lists the special-purpose blocks (RFC 6890 and successors)
// that are not covered by the netip predicates used in classify.
var blockedRanges = []addrRange{
	{netip.MustParsePrefix("169.254.169.254/32"), "cloud metadata", true},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "cloud metadata", true},
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network", true},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved", true}, // includes 255.255.255.255
	{netip.MustParsePrefix("100::/64"), "discard-only", true},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT", false},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment", false},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking", false},
	{netip.MustParsePrefix("fec0::/10"), "site-local", false},
	{netip.MustParsePrefix("2001::/32"), "Teredo tunnel", false},
}

// Prefixes whose addresses embed an IPv4 address that a gateway may
// forward to; the embedded address is judged instead.
var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour  = netip.MustParsePrefix("2002::/16")
	v4Compat   = netip.MustParsePrefix("::/96")
)

// classify returns why ip is not a public unicast address, or "" if it is,
// and whether the refusal holds even with AllowPrivate.
func classify(ip netip.Addr) (reason string, always bool) {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid():
		return "invalid", true
	case ip.IsUnspecified():
		return "unspecified", true
	case ip.IsMulticast():
		return "multicast", true
	}
	for _, r := range blockedRanges {
		if r.prefix.Contains(ip) {
			return r.reason, r.always
		}
	}
	switch {
	case ip.IsLoopback():
		return "loopback", false
	case ip.IsPrivate():
		return "private", false
	case ip.IsLinkLocalUnicast():
		return "link-local", false
	}
	if ip.Is6() {
		b := ip.As16()
		var embedded netip.Addr
		switch {
		case nat64.Contains(ip), nat64Local.Contains(ip), v4Compat.Contains(ip):
			embedded = netip.AddrFrom4([4]byte(b[12:16]))
		case sixToFour.Contains(ip):
			embedded = netip.AddrFrom4([4]byte(b[2:6]))
		}
		if embedded.IsValid() {
			if why, always := classify(embedded); why != "" {
				return "IPv6 address embedding a " + why + " IPv4 address", always
			}
		}
	}
	return "", false
}

// checkAddr refuses addresses the policy does not allow plugins to reach.
func (cp *compiledPolicy) checkAddr(ip netip.Addr) error {
	reason, always := classify(ip)
	if reason == "" || (cp.allowPrivate && !always) {
		return nil
	}
	return fmt.Errorf("%w: %s is a %s address", ErrAddressNotAllowed, ip.Unmap(), reason)
}
