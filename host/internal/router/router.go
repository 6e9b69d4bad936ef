// Package router matches request paths against a plugin's manifest routes.
//
// Fiber routes cannot be removed, and plugins are swapped at run time, so the gateway
// registers one catch-all route per plugin prefix and each plugin generation carries
// its own immutable Table built here. Literal segments win over parameters, and
// parameters over a trailing wildcard, whatever the order in the manifest.
package router

import (
	"strings"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
)

// Table is an immutable route table. It is safe for concurrent use.
type Table struct {
	root *node
}

type node struct {
	literal  map[string]*node
	param    *node
	name     string // parameter name for param nodes
	wildcard map[string]*manifest.Route
	routes   map[string]*manifest.Route // by method, for routes ending here
}

// Match is a successful lookup.
type Match struct {
	Route  *manifest.Route
	Params []wire.KV
}

// New builds a table from validated manifest routes.
func New(routes []manifest.Route) *Table {
	t := &Table{root: &node{}}
	for i := range routes {
		r := &routes[i]
		n := t.root
		segs := split(r.Path)
		for j, s := range segs {
			switch {
			case s == "*" && j == len(segs)-1:
				if n.wildcard == nil {
					n.wildcard = map[string]*manifest.Route{}
				}
				n.wildcard[r.Method] = r
				n = nil
			case strings.HasPrefix(s, ":"):
				if n.param == nil {
					n.param = &node{name: s[1:]}
				}
				n = n.param
			default:
				if n.literal == nil {
					n.literal = map[string]*node{}
				}
				c := n.literal[s]
				if c == nil {
					c = &node{}
					n.literal[s] = c
				}
				n = c
			}
			if n == nil {
				break
			}
		}
		if n != nil {
			if n.routes == nil {
				n.routes = map[string]*manifest.Route{}
			}
			n.routes[r.Method] = r
		}
	}
	return t
}

// Lookup finds the route for method and path. When the path matches routes but none
// with this method, found is false and allowed lists the methods that would match, so
// the gateway can answer 405 instead of 404.
func (t *Table) Lookup(method, path string) (m Match, found bool, allowed []string) {
	segs := split(path)
	var params []wire.KV
	if n := t.match(t.root, segs, method, &params, &m, &allowed); n {
		m.Params = params
		return m, true, nil
	}
	return Match{}, false, allowed
}

func (t *Table) match(n *node, segs []string, method string, params *[]wire.KV, m *Match, allowed *[]string) bool {
	if len(segs) == 0 {
		if r := n.routes[method]; r != nil {
			m.Route = r
			return true
		}
		for k := range n.routes {
			*allowed = append(*allowed, k)
		}
		// "/files/*" also matches "/files/" and "/files".
		if r := n.wildcard[method]; r != nil {
			m.Route = r
			*params = append(*params, wire.KV{Name: "*", Value: ""})
			return true
		}
		return false
	}
	if c := n.literal[segs[0]]; c != nil && t.match(c, segs[1:], method, params, m, allowed) {
		return true
	}
	if n.param != nil && segs[0] != "" {
		mark := len(*params)
		*params = append(*params, wire.KV{Name: n.param.name, Value: segs[0]})
		if t.match(n.param, segs[1:], method, params, m, allowed) {
			return true
		}
		*params = (*params)[:mark]
	}
	if n.wildcard != nil {
		if r := n.wildcard[method]; r != nil {
			m.Route = r
			*params = append(*params, wire.KV{Name: "*", Value: strings.Join(segs, "/")})
			return true
		}
		for k := range n.wildcard {
			*allowed = append(*allowed, k)
		}
	}
	return false
}

// split turns "/a/b/" into ["a", "b", ""] and "/" into [].
func split(p string) []string {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}
