package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestAccessTokenVerifiesWithThePublicKey(t *testing.T) {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	s, err := newSigner(base64.StdEncoding.EncodeToString(seed))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	tok, err := s.accessToken(now, "acme", "u1", "s1", nil)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if len(parts) != 3 || !ed25519.Verify(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey), []byte(parts[0]+"."+parts[1]), sig) {
		t.Fatalf("token does not verify: %s", tok)
	}
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if string(hb) != `{"alg":"EdDSA","typ":"JWT","kid":"`+s.kid+`"}` || len(s.kid) != 16 {
		t.Fatalf("header %s", hb)
	}
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c accessClaims
	if err := json.Unmarshal(cb, &c); err != nil {
		t.Fatal(err)
	}
	if c.Iss != issuer || c.Aud != audience || c.Perms == nil || c.Exp-c.Iat != 600 || c.Nbf != c.Iat || len(c.Jti) != 32 {
		t.Fatalf("claims %s", cb)
	}
	if !strings.Contains(string(cb), `"perms":[]`) {
		t.Fatalf("no permissions must encode as [], not null: %s", cb)
	}
}

func TestSignerRefusesBadSeeds(t *testing.T) {
	for _, seed := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(make([]byte, 31)), base64.RawURLEncoding.EncodeToString(make([]byte, 32)) + "x"} {
		if _, err := newSigner(seed); err == nil {
			t.Errorf("seed %q accepted", seed)
		}
	}
}

func TestNormPermissions(t *testing.T) {
	got, err := normPermissions([]string{"b.read", " a.write", "b.read"})
	if err != nil || strings.Join(got, ",") != "a.write,b.read" {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"*", "a.*", "A.read", "", "a b"} {
		if _, err := normPermissions([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRefreshTokensAreStoredHashed(t *testing.T) {
	tok, hash := newRefreshToken()
	if !strings.HasPrefix(tok, "rt_") || len(tok) != 46 || hash != hashToken(tok) || strings.Contains(hash, tok) {
		t.Fatalf("token %q hash %q", tok, hash)
	}
	if other, _ := newRefreshToken(); other == tok {
		t.Fatal("two refresh tokens are equal")
	}
}
