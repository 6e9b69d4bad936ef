package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// The token contract the host's gateway verifies (README.md, "Token contract").
const (
	issuer    = "keel-auth"
	audience  = "keel"
	accessTTL = 10 * time.Minute
)

// signer signs access tokens with the Ed25519 key derived from the signing_seed setting.
type signer struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	kid  string
	head string // base64url of the JOSE header, identical for every token
}

// newSigner derives the key from seed, standard base64 of a 32-byte Ed25519 seed.
func newSigner(seed string) (*signer, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(seed))
	if err != nil || len(b) != ed25519.SeedSize {
		return nil, errors.New("setting signing_seed: want standard base64 of a 32-byte Ed25519 seed")
	}
	priv := ed25519.NewKeyFromSeed(b)
	pub := priv.Public().(ed25519.PublicKey)
	s := &signer{priv: priv, pub: pub, kid: keyID(pub)}
	h, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}{"EdDSA", "JWT", s.kid})
	if err != nil {
		return nil, err
	}
	s.head = base64.RawURLEncoding.EncodeToString(h)
	return s, nil
}

// keyID is the header's kid: the first 16 hex digits of the SHA-256 of the public key.
func keyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// accessClaims are the claims of an access token, in the contract's order.
type accessClaims struct {
	Iss   string   `json:"iss"`
	Aud   string   `json:"aud"`
	Sub   string   `json:"sub"`
	Tid   string   `json:"tid"`
	Sid   string   `json:"sid"`
	Jti   string   `json:"jti"`
	Perms []string `json:"perms"`
	Iat   int64    `json:"iat"`
	Nbf   int64    `json:"nbf"`
	Exp   int64    `json:"exp"`
}

// accessToken issues a token for user in tenant and session sid, valid from now for accessTTL.
func (s *signer) accessToken(now time.Time, tenant, user, sid string, perms []string) (string, error) {
	if perms == nil {
		perms = []string{}
	}
	c := accessClaims{
		Iss: issuer, Aud: audience, Sub: user, Tid: tenant, Sid: sid, Jti: randomID(16), Perms: perms,
		Iat: now.Unix(), Nbf: now.Unix(), Exp: now.Add(accessTTL).Unix(),
	}
	cb, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	in := s.head + "." + base64.RawURLEncoding.EncodeToString(cb)
	return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.priv, []byte(in))), nil
}

// jwks describes the public key as a JSON Web Key Set (RFC 8037), plus the standard
// base64 form the host's KEEL_JWT_PUBLIC_KEY expects.
func (s *signer) jwks() map[string]any {
	return map[string]any{
		"keys": []map[string]string{{
			"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": s.kid,
			"x": base64.RawURLEncoding.EncodeToString(s.pub),
		}},
		"public_key": base64.StdEncoding.EncodeToString(s.pub),
	}
}

// randomID returns n random bytes as hex (session ids, token ids).
func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("auth: no randomness: " + err.Error()) // never happens; the SDK turns it into a 500
	}
	return hex.EncodeToString(b)
}

// newRefreshToken returns an opaque refresh token (256 random bits, base64url) and the
// hash that is stored in its place.
func newRefreshToken() (token, hash string) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("auth: no randomness: " + err.Error())
	}
	token = "rt_" + base64.RawURLEncoding.EncodeToString(b)
	return token, hashToken(token)
}

// hashToken is the stored form of a refresh token: hex SHA-256. The token has 256 bits
// of entropy, so a fast hash is enough; it keeps a database leak from yielding tokens.
func hashToken(t string) string {
	sum := sha256.Sum256([]byte(t))
	return hex.EncodeToString(sum[:])
}
