package satoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

const issuer = "https://kubernetes.default.svc.cluster.local"

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func mustKey(t *testing.T, kind string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kind {
	case "ec":
		k, err = GenerateKey()
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func claims(now time.Time, ttl time.Duration, aud ...string) Claims {
	return Claims{Issuer: issuer, Subject: Subject("ns", "sa"), Audience: aud,
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(ttl).Unix(), ID: "id-1",
		Kubernetes: &Private{Namespace: "ns", ServiceAccount: Ref{Name: "sa", UID: "sa-uid"},
			Pod: &Ref{Name: "p", UID: "p-uid"}}}
}

func verifier(t *testing.T, now time.Time, keys ...crypto.PublicKey) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{Keys: keys, Issuers: []string{issuer}, Audiences: []string{issuer, "vault"},
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSignVerifyRoundTrip(t *testing.T) {
	for _, kind := range []string{"ec", "rsa"} {
		t.Run(kind, func(t *testing.T) {
			k := mustKey(t, kind)
			s, err := NewSigner(k)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := s.Sign(claims(t0, time.Hour, issuer))
			if err != nil {
				t.Fatal(err)
			}
			if !LooksLikeJWT(tok) {
				t.Fatalf("LooksLikeJWT(%q) = false", tok)
			}
			p, err := Parse(tok)
			if err != nil {
				t.Fatal(err)
			}
			wantAlg := map[string]string{"ec": "ES256", "rsa": "RS256"}[kind]
			if p.header.Alg != wantAlg || p.KeyID() != s.KeyID() || p.KeyID() == "" {
				t.Errorf("header = %+v, want alg %s kid %s", p.header, wantAlg, s.KeyID())
			}
			c, err := verifier(t, t0.Add(30*time.Minute), s.Public()).Verify(tok)
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject != "system:serviceaccount:ns:sa" || c.Kubernetes.Pod.UID != "p-uid" || c.ID != "id-1" ||
				c.Kubernetes.ServiceAccount.UID != "sa-uid" {
				t.Errorf("claims = %+v", c)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	k := mustKey(t, "ec")
	s, _ := NewSigner(k)
	other, _ := NewSigner(mustKey(t, "ec"))
	good, _ := s.Sign(claims(t0, time.Hour, issuer))
	sign := func(s *Signer, c Claims) string {
		tok, err := s.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	parts := strings.Split(good, ".")
	tamperedBody := func() string {
		c := claims(t0, time.Hour, issuer)
		c.Subject = Subject("kube-system", "admin")
		forged := strings.Split(sign(s, c), ".")[1]
		return parts[0] + "." + forged + "." + parts[2]
	}()
	noneAlg := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "."
	otherIssuer := claims(t0, time.Hour, issuer)
	otherIssuer.Issuer = "https://evil"
	for _, tc := range []struct {
		name string
		tok  string
		now  time.Time
		want error
	}{
		{"valid", good, t0.Add(time.Minute), nil},
		{"expired", good, t0.Add(time.Hour + Leeway + time.Second), ErrExpired},
		{"within leeway after exp", good, t0.Add(time.Hour + Leeway/2), nil},
		{"not yet valid", good, t0.Add(-Leeway - time.Second), ErrNotYetValid},
		{"wrong key", sign(other, claims(t0, time.Hour, issuer)), t0, ErrSignature},
		{"wrong audience", sign(s, claims(t0, time.Hour, "someone-else")), t0, ErrAudience},
		{"no audience", sign(s, claims(t0, time.Hour)), t0, ErrAudience},
		{"wrong issuer", sign(s, otherIssuer), t0, ErrIssuer},
		{"tampered claims", tamperedBody, t0, ErrSignature},
		{"tampered signature", parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64)), t0, ErrSignature},
		{"alg none", noneAlg, t0, ErrSignature},
		{"two parts", parts[0] + "." + parts[1], t0, ErrMalformed},
		{"bad base64", parts[0] + ".!!!." + parts[2], t0, ErrMalformed},
		{"no exp", sign(s, func() Claims { c := claims(t0, time.Hour, issuer); c.Expiry = 0; return c }()), t0, ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verifier(t, tc.now, s.Public()).Verify(tc.tok)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifierPicksKeyByKid(t *testing.T) {
	a, _ := NewSigner(mustKey(t, "ec"))
	b, _ := NewSigner(mustKey(t, "rsa"))
	v := verifier(t, t0, a.Public(), b.Public())
	for _, s := range []*Signer{a, b} {
		tok, err := s.Sign(claims(t0, time.Hour, "vault"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("key %s: %v", s.KeyID(), err)
		}
	}
}

func TestKeyEncodeParse(t *testing.T) {
	for _, kind := range []string{"ec", "rsa"} {
		k := mustKey(t, kind)
		keyPEM, pubPEM, err := EncodeKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(pubPEM), "PUBLIC KEY") {
			t.Errorf("%s: public PEM %q", kind, pubPEM)
		}
		back, err := ParseKey(keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		id1, _ := KeyID(k.Public())
		id2, _ := KeyID(back.Public())
		if id1 != id2 {
			t.Errorf("%s: key changed through PEM", kind)
		}
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewSigner(p384); err == nil {
		t.Error("NewSigner accepted a P-384 key")
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := NewSigner(small); err == nil {
		t.Error("NewSigner accepted a 1024-bit RSA key")
	}
	if _, err := ParseKey([]byte("junk")); err == nil {
		t.Error("ParseKey accepted junk")
	}
}

func TestAudienceAcceptsStringOrArray(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{{`"a"`, []string{"a"}}, {`["a","b"]`, []string{"a", "b"}}} {
		var a Audience
		if err := a.UnmarshalJSON([]byte(tc.in)); err != nil || strings.Join(a, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: %v %v", tc.in, a, err)
		}
	}
	var a Audience
	if err := a.UnmarshalJSON([]byte(`3`)); err == nil {
		t.Error("aud 3 accepted")
	}
}
