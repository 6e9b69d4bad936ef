// Package authn verifies the access tokens the auth plugin issues, for the gateway.
//
// Tokens are JWTs signed with Ed25519 ("alg":"EdDSA"). The algorithm is pinned: a
// token claiming any other algorithm, "none" included, is refused before its
// signature is even looked at, which closes the classic algorithm-confusion attacks.
// Issuer, audience, expiry and not-before are checked with a small clock leeway, and
// the session a token belongs to must not be revoked: that is looked up in the auth
// plugin's sessions table and cached for a few seconds, so a logout or a detected
// refresh-token reuse takes effect on every host within that time.
package authn

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Expected claim values of the token contract (plugins/auth/README.md).
const (
	Issuer   = "keel-auth"
	Audience = "keel"
)

// ErrInvalid is wrapped by every reason a token is refused (the gateway answers 401).
var ErrInvalid = errors.New("invalid access token")

// ErrUnavailable means the session could not be checked (the gateway answers 503).
var ErrUnavailable = errors.New("cannot check the session")

// Claims are the verified contents of an access token.
type Claims struct {
	Subject     string
	Tenant      string
	Session     string
	ID          string
	Permissions []string
	Expires     time.Time
}

// SessionCheck reports whether a session is still valid (exists, not revoked, not
// expired).
type SessionCheck func(ctx context.Context, sid string) (bool, error)

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	pub    ed25519.PublicKey
	kid    string
	leeway time.Duration
	now    func() time.Time
	check  SessionCheck
	ttl    time.Duration

	mu    sync.Mutex
	cache map[string]cached

	// verified remembers tokens whose signature and claims checked out, until they
	// expire: Ed25519 verification costs tens of microseconds, and a client sends the
	// same token with every request for its 10-minute life. Revocation is still
	// checked per request (through the short session cache).
	vmu      sync.Mutex
	verified map[[32]byte]*Claims
}

type cached struct {
	valid bool
	until time.Time
}

// Options tune a Verifier.
type Options struct {
	// Sessions checks revocation; nil skips the check (no database).
	Sessions SessionCheck
	// CacheTTL is how long a session check is trusted (default 5 s).
	CacheTTL time.Duration
	// Leeway tolerates clock skew on exp and nbf (default 30 s).
	Leeway time.Duration
	// Now replaces the clock in tests.
	Now func() time.Time
}

// New creates a verifier for tokens signed by the key whose public half is pub.
func New(pub ed25519.PublicKey, opts Options) (*Verifier, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("authn: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 5 * time.Second
	}
	if opts.Leeway <= 0 {
		opts.Leeway = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Verifier{pub: pub, kid: KeyID(pub), leeway: opts.Leeway, now: opts.Now, check: opts.Sessions, ttl: opts.CacheTTL,
		cache: map[string]cached{}, verified: map[[32]byte]*Claims{}}, nil
}

// KeyID is the token header's kid for a key: the first 16 hex digits of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// ParsePublicKey reads a public key given as standard base64 of its 32 bytes.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("want standard base64 of a 32-byte Ed25519 public key")
	}
	return ed25519.PublicKey(b), nil
}

// MaxTokenSize bounds what is parsed at all.
const MaxTokenSize = 8 << 10

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Verify checks a compact JWT and returns its claims.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	c, err := v.parseCached(token)
	if err != nil {
		return nil, err
	}
	if v.check != nil {
		ok, err := v.session(ctx, c.Session)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, invalid("session revoked or expired")
		}
	}
	return c, nil
}

// parseCached is parse with a memo of verified tokens, bounded and dropped at expiry.
func (v *Verifier) parseCached(token string) (*Claims, error) {
	if len(token) > MaxTokenSize {
		return v.parse(token)
	}
	key := sha256.Sum256([]byte(token))
	now := v.now()
	v.vmu.Lock()
	c, ok := v.verified[key]
	v.vmu.Unlock()
	if ok && now.Before(c.Expires.Add(v.leeway)) {
		return c, nil
	}
	c, err := v.parse(token)
	if err != nil {
		return nil, err
	}
	v.vmu.Lock()
	if len(v.verified) > 50_000 {
		for k, old := range v.verified {
			if !now.Before(old.Expires.Add(v.leeway)) || len(v.verified) > 50_000 {
				delete(v.verified, k)
			}
		}
	}
	v.verified[key] = c
	v.vmu.Unlock()
	return c, nil
}

type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

type claims struct {
	Iss   string          `json:"iss"`
	Aud   json.RawMessage `json:"aud"`
	Sub   string          `json:"sub"`
	Tid   string          `json:"tid"`
	Sid   string          `json:"sid"`
	Jti   string          `json:"jti"`
	Perms []string        `json:"perms"`
	Iat   *float64        `json:"iat"`
	Nbf   *float64        `json:"nbf"`
	Exp   *float64        `json:"exp"`
}

// parse verifies everything that needs no lookup.
func (v *Verifier) parse(token string) (*Claims, error) {
	if len(token) == 0 || len(token) > MaxTokenSize {
		return nil, invalid("empty or longer than %d bytes", MaxTokenSize)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, invalid("not a compact JWT")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, invalid("header encoding")
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, invalid("header is not JSON")
	}
	if h.Alg != "EdDSA" {
		return nil, invalid("algorithm %q is not accepted", h.Alg)
	}
	if h.Kid != "" && h.Kid != v.kid {
		return nil, invalid("unknown key id")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, invalid("signature encoding")
	}
	if !ed25519.Verify(v.pub, []byte(parts[0]+"."+parts[1]), sig) {
		return nil, invalid("bad signature")
	}
	cb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, invalid("claims encoding")
	}
	var c claims
	dec := json.NewDecoder(bytes.NewReader(cb))
	if err := dec.Decode(&c); err != nil {
		return nil, invalid("claims are not JSON")
	}
	now := v.now()
	switch {
	case c.Iss != Issuer:
		return nil, invalid("issuer %q", c.Iss)
	case !audienceOK(c.Aud):
		return nil, invalid("wrong audience")
	case c.Exp == nil:
		return nil, invalid("no expiry")
	case now.After(time.Unix(int64(*c.Exp), 0).Add(v.leeway)):
		return nil, invalid("expired")
	case c.Nbf != nil && now.Add(v.leeway).Before(time.Unix(int64(*c.Nbf), 0)):
		return nil, invalid("not valid yet")
	case c.Sub == "" || c.Tid == "" || c.Sid == "":
		return nil, invalid("sub, tid and sid are required")
	}
	return &Claims{Subject: c.Sub, Tenant: c.Tid, Session: c.Sid, ID: c.Jti, Permissions: c.Perms,
		Expires: time.Unix(int64(*c.Exp), 0)}, nil
}

func audienceOK(raw json.RawMessage) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == Audience
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, a := range many {
			if a == Audience {
				return true
			}
		}
	}
	return false
}

// session consults the cache, then the check, failing closed on errors.
func (v *Verifier) session(ctx context.Context, sid string) (bool, error) {
	now := v.now()
	v.mu.Lock()
	if c, ok := v.cache[sid]; ok && now.Before(c.until) {
		v.mu.Unlock()
		return c.valid, nil
	}
	v.mu.Unlock()
	valid, err := v.check(ctx, sid)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	v.mu.Lock()
	if len(v.cache) > 100_000 { // bound memory; entries are cheap to recompute
		v.cache = map[string]cached{}
	}
	v.cache[sid] = cached{valid: valid, until: now.Add(v.ttl)}
	v.mu.Unlock()
	return valid, nil
}
