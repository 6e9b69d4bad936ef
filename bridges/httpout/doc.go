// Package httpout is the outbound HTTP guard: the only way a plugin reaches
// the network.
//
// A plugin's manifest declares the hosts it may call; the host builds one
// [Client] per plugin from that [Policy] and performs each request for it.
// The guard enforces, in order:
//
//   - the request itself: method, header syntax, body size;
//   - the URL: scheme (https only unless http is opted in) and host, matched
//     against the allowlist (exact names, "*.example.com" wildcards, IP
//     literals, optional ports); everything else is denied;
//   - the address actually dialled: after DNS resolution, in the dialer
//     itself, loopback, private, link-local, CGNAT and similar ranges are
//     refused unless Policy.AllowPrivate is set, and cloud metadata,
//     unspecified, multicast and reserved addresses are always refused.
//     Checking the dialled address rather than the name defeats DNS
//     rebinding and names that point inside the network;
//   - every redirect hop, against the same allowlist and address rules, at
//     most five hops by default;
//   - a total deadline, a connect deadline, and a response body cap that
//     fails the call rather than truncating silently.
//
// Proxy settings from the environment are ignored, hop-by-hop headers are
// stripped both ways, and every error matches exactly one of the sentinel
// errors below (or context.Canceled), so that the host can map them to
// stable numeric ABI error codes.
package httpout
