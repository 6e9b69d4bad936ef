// Package manifest defines a Keel plugin's manifest (manifest.json): its identity, the
// ABI level it needs, its routes, the capabilities it may use and its limits.
//
// Decoding is strict. Unknown fields, duplicate routes and out-of-range limits are
// errors, not warnings, because a typo in a manifest would otherwise silently widen
// or narrow what a plugin may do.
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
)

// CurrentABI is the newest ABI level this host implements. Plugins that need a newer
// level are refused.
const CurrentABI = 1

// MaxSize bounds a manifest file.
const MaxSize = 256 << 10

// Manifest describes one plugin version.
type Manifest struct {
	Name         string       `json:"name"`
	Version      string       `json:"version"`
	ABI          int          `json:"abi"`
	Description  string       `json:"description,omitempty"`
	Routes       []Route      `json:"routes,omitempty"`
	Capabilities Capabilities `json:"capabilities"`
	Limits       Limits       `json:"limits"`
}

// Route is one HTTP route below /api/{plugin}.
type Route struct {
	Method string `json:"method"`
	// Path is a pattern of literal segments, ":name" parameters and an optional final "*".
	Path string `json:"path"`
	// Permission, when set, is required of the caller.
	Permission string `json:"permission,omitempty"`
	// Public routes need no authentication at all.
	Public bool `json:"public,omitempty"`
	// ReadOnly routes run their SQL read-only: each statement in its own implicit
	// transaction with the tenant set (one round trip, no BEGIN or COMMIT), writes
	// refused by PostgreSQL, and no events published. For handlers that only read.
	ReadOnly bool `json:"read_only,omitempty"`
	// Prefetch, on a read_only route, is the route's lookup statement: the host runs it
	// before it hands the request to an instance and passes the rows in with it, so that
	// no instance is held while the database answers. See Prefetch.
	Prefetch *Prefetch `json:"prefetch,omitempty"`
}

// Prefetch declares the statement a read_only route's handler runs first. The host runs
// it with DB.QueryJSON's request (SQL, the named route parameters as text arguments
// $1, $2, ..., rows as JSON) through the same SQL capability, tenant and checks; the
// SDK answers the handler's own DB.QueryJSON from it when the handler's request is
// byte for byte the same, and otherwise asks the host as usual. A statement that fails
// is simply not passed on.
type Prefetch struct {
	SQL    string   `json:"sql"`
	Params []string `json:"params,omitempty"` // route parameter names, in $n order
}

// MaxPrefetchSQL bounds a declared prefetch statement.
const MaxPrefetchSQL = 16 << 10

// Limits bound what one instance and one call may consume. Zero values take defaults.
type Limits struct {
	MemoryMiB        int `json:"memory_mib,omitempty"`
	CallTimeoutMS    int `json:"call_timeout_ms,omitempty"`
	PoolMin          int `json:"pool_min,omitempty"`
	PoolMax          int `json:"pool_max,omitempty"`
	MaxRequestBytes  int `json:"max_request_bytes,omitempty"`
	MaxResponseBytes int `json:"max_response_bytes,omitempty"`
}

// Defaults applied to zero limits.
const (
	DefaultMemoryMiB        = 64
	DefaultCallTimeoutMS    = 5000
	DefaultPoolMin          = 1
	DefaultPoolMax          = 8
	DefaultMaxRequestBytes  = 1 << 20
	DefaultMaxResponseBytes = 4 << 20
)

// CallTimeout returns the per-call deadline as a duration.
func (l Limits) CallTimeout() time.Duration { return time.Duration(l.CallTimeoutMS) * time.Millisecond }

var (
	nameRE       = regexp.MustCompile(`^[a-z][a-z0-9-]{0,38}[a-z0-9]$`)
	versionRE    = regexp.MustCompile(`^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})(-[0-9A-Za-z.-]{1,40})?$`)
	segmentRE    = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)
	paramRE      = regexp.MustCompile(`^:[a-z_][a-z0-9_]{0,30}$`)
	permissionRE = regexp.MustCompile(`^[a-z][a-z0-9._:-]{0,99}$`)
	methods      = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true}
)

// ValidName reports whether s is a valid plugin name: 2 to 40 characters of lower-case
// letters, digits and dashes, starting with a letter and not ending with a dash.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Decode reads and validates a manifest. Defaults are applied to zero limits.
func Decode(r io.Reader) (*Manifest, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("manifest: read: %w", err)
	}
	return Parse(data)
}

// Parse decodes and validates a manifest held in memory.
func Parse(data []byte) (*Manifest, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("manifest: larger than %d bytes", MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if dec.More() {
		return nil, errors.New("manifest: trailing data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks every field, applies defaults to zero limits and returns all
// problems found, joined, each naming the field.
func (m *Manifest) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if !ValidName(m.Name) {
		bad("name %q: want 2-40 lower-case letters, digits or dashes, starting with a letter", m.Name)
	}
	if !versionRE.MatchString(m.Version) {
		bad("version %q: want semantic version MAJOR.MINOR.PATCH[-pre]", m.Version)
	}
	switch {
	case m.ABI < 1:
		bad("abi %d: must be at least 1", m.ABI)
	case m.ABI > CurrentABI:
		bad("abi %d: this host implements ABI level %d; upgrade the host to run this plugin", m.ABI, CurrentABI)
	}
	if len(m.Description) > 1000 {
		bad("description: longer than 1000 characters")
	}
	if len(m.Routes) > 500 {
		bad("routes: more than 500")
	}
	seen := map[string]int{}
	for i, r := range m.Routes {
		where := fmt.Sprintf("routes[%d] %s %s", i, r.Method, r.Path)
		if !methods[r.Method] {
			bad("%s: method must be one of GET, HEAD, POST, PUT, PATCH, DELETE (upper case)", where)
		}
		shape, err := routeShape(r.Path)
		if err != nil {
			bad("%s: %v", where, err)
		} else if j, dup := seen[r.Method+" "+shape]; dup {
			bad("%s: same method and path shape as routes[%d]", where, j)
		} else {
			seen[r.Method+" "+shape] = i
		}
		if r.Permission != "" && !permissionRE.MatchString(r.Permission) {
			bad("%s: permission %q: want lower-case letters, digits and . _ : -", where, r.Permission)
		}
		if r.Public && r.Permission != "" {
			bad("%s: a public route cannot require a permission", where)
		}
		if pf := r.Prefetch; pf != nil {
			switch {
			case !r.ReadOnly:
				bad("%s: prefetch needs a read_only route (its statement runs before the handler, on its own)", where)
			case !m.Capabilities.SQL:
				bad("%s: prefetch needs the sql capability", where)
			case strings.TrimSpace(pf.SQL) == "" || len(pf.SQL) > MaxPrefetchSQL:
				bad("%s: prefetch.sql must be a statement of at most %d bytes", where, MaxPrefetchSQL)
			case len(pf.Params) > 16:
				bad("%s: prefetch.params: at most 16", where)
			}
			for _, name := range pf.Params {
				if !slices.Contains(strings.Split(r.Path, "/"), ":"+name) {
					bad("%s: prefetch.params: %q is not a parameter of the path", where, name)
				}
			}
		}
	}
	errs = append(errs, m.Capabilities.validate(m.Name)...)
	errs = append(errs, m.Limits.validate()...)
	if len(errs) > 0 {
		return fmt.Errorf("manifest %s@%s: %w", m.Name, m.Version, errors.Join(errs...))
	}
	return nil
}

func (l *Limits) validate() []error {
	var errs []error
	check := func(field string, v *int, def, lo, hi int) {
		if *v == 0 {
			*v = def
		}
		if *v < lo || *v > hi {
			errs = append(errs, fmt.Errorf("limits.%s %d: must be between %d and %d", field, *v, lo, hi))
		}
	}
	check("memory_mib", &l.MemoryMiB, DefaultMemoryMiB, 8, 4096)
	check("call_timeout_ms", &l.CallTimeoutMS, DefaultCallTimeoutMS, 1, 300000)
	check("pool_max", &l.PoolMax, DefaultPoolMax, 1, 256)
	if l.PoolMin == 0 {
		l.PoolMin = min(DefaultPoolMin, l.PoolMax)
	}
	if l.PoolMin < 0 || l.PoolMin > l.PoolMax {
		errs = append(errs, fmt.Errorf("limits.pool_min %d: must be between 0 and pool_max (%d)", l.PoolMin, l.PoolMax))
	}
	check("max_request_bytes", &l.MaxRequestBytes, DefaultMaxRequestBytes, 1, 64<<20)
	check("max_response_bytes", &l.MaxResponseBytes, DefaultMaxResponseBytes, 1, 64<<20)
	return errs
}

// routeShape validates a route pattern and returns its shape, with parameter names
// erased, so that "/a/:id" and "/a/:key" are recognised as the same route.
func routeShape(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", errors.New("path must start with '/'")
	}
	if len(p) > 500 {
		return "", errors.New("path longer than 500 characters")
	}
	if p == "/" {
		return "/", nil
	}
	segs := strings.Split(p[1:], "/")
	params := map[string]bool{}
	for i, s := range segs {
		switch {
		case s == "*":
			if i != len(segs)-1 {
				return "", errors.New("'*' is only allowed as the last segment")
			}
		case strings.HasPrefix(s, ":"):
			if !paramRE.MatchString(s) {
				return "", fmt.Errorf("parameter %q: want ':' and a lower-case identifier", s)
			}
			if params[s] {
				return "", fmt.Errorf("parameter %q appears twice", s)
			}
			params[s] = true
			segs[i] = ":"
		case s == "":
			if i != len(segs)-1 {
				return "", errors.New("empty path segment")
			}
		case !segmentRE.MatchString(s):
			return "", fmt.Errorf("segment %q: want letters, digits and . _ ~ -", s)
		}
	}
	return "/" + strings.Join(segs, "/"), nil
}
