package authn

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

var now = time.Unix(1_800_000_000, 0)

func sign(t testing.TB, priv ed25519.PrivateKey, hdr, cl map[string]any) string {
	hb, _ := json.Marshal(hdr)
	cb, _ := json.Marshal(cl)
	in := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(in)))
}

func good() map[string]any {
	return map[string]any{"iss": Issuer, "aud": Audience, "sub": "u1", "tid": "acme", "sid": "s1", "jti": "j1",
		"perms": []string{"a.read"}, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
}

func TestVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	revoked := map[string]bool{"s-revoked": true}
	v, err := New(pub, Options{Now: func() time.Time { return now }, Sessions: func(_ context.Context, sid string) (bool, error) {
		if sid == "s-down" {
			return false, errors.New("database down")
		}
		return !revoked[sid], nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	hdr := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": KeyID(pub)}
	c, err := v.Verify(context.Background(), sign(t, priv, hdr, good()))
	if err != nil || c.Tenant != "acme" || c.Subject != "u1" || c.Session != "s1" || len(c.Permissions) != 1 {
		t.Fatalf("good token: %v %+v", err, c)
	}
	with := func(k string, val any) map[string]any { m := good(); m[k] = val; return m }
	without := func(k string) map[string]any { m := good(); delete(m, k); return m }
	unsigned := func(h map[string]any, cl map[string]any) string {
		hb, _ := json.Marshal(h)
		cb, _ := json.Marshal(cl)
		return base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb) + "."
	}
	for name, tok := range map[string]string{
		"forged":          sign(t, other, hdr, good()),
		"alg none":        unsigned(map[string]any{"alg": "none"}, good()),
		"alg HS256":       sign(t, priv, map[string]any{"alg": "HS256"}, good()),
		"expired":         sign(t, priv, hdr, with("exp", now.Add(-time.Hour).Unix())),
		"no exp":          sign(t, priv, hdr, without("exp")),
		"not yet":         sign(t, priv, hdr, with("nbf", now.Add(time.Hour).Unix())),
		"wrong audience":  sign(t, priv, hdr, with("aud", "other")),
		"wrong issuer":    sign(t, priv, hdr, with("iss", "evil")),
		"no tenant":       sign(t, priv, hdr, without("tid")),
		"revoked":         sign(t, priv, hdr, with("sid", "s-revoked")),
		"kid mismatch":    sign(t, priv, map[string]any{"alg": "EdDSA", "kid": "0000"}, good()),
		"garbage":         "a.b.c",
		"two parts":       "abc.def",
		"tampered claims": func() string { s := sign(t, priv, hdr, good()); return s[:len(s)-90] + "A" + s[len(s)-89:] }(),
	} {
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	if _, err := v.Verify(context.Background(), sign(t, priv, hdr, with("aud", []string{"x", Audience}))); err != nil {
		t.Errorf("audience array: %v", err)
	}
	if _, err := v.Verify(context.Background(), sign(t, priv, hdr, with("sid", "s-down"))); !errors.Is(err, ErrUnavailable) {
		t.Errorf("session store down: %v, want ErrUnavailable (fail closed)", err)
	}
}

func TestSessionCheckIsCached(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	clock := now
	calls, valid := 0, true
	v, _ := New(pub, Options{Now: func() time.Time { return clock }, CacheTTL: 5 * time.Second,
		Sessions: func(context.Context, string) (bool, error) { calls++; return valid, nil }})
	tok := sign(t, priv, map[string]any{"alg": "EdDSA"}, good())
	for i := 0; i < 3; i++ {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	valid = false // revoked; visible after the cache entry expires
	clock = clock.Add(6 * time.Second)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrInvalid) || calls != 2 {
		t.Fatalf("after revocation: %v, %d checks", err, calls)
	}
}

func TestVerifiedTokensStillExpire(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	clock := now
	v, _ := New(pub, Options{Now: func() time.Time { return clock }, Leeway: time.Second})
	tok := sign(t, priv, map[string]any{"alg": "EdDSA"}, good())
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tok); err != nil { // from the memo
		t.Fatal(err)
	}
	clock = clock.Add(11 * time.Minute)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a remembered token outlived its expiry: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	v, _ := New(pub, Options{Now: func() time.Time { return now }})
	f.Add(sign(f, priv, map[string]any{"alg": "EdDSA"}, good()))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(context.Background(), tok)
		if err == nil && (c.Tenant == "" || c.Subject == "") {
			t.Fatalf("accepted a token without tenant or subject: %q", tok)
		}
	})
}
