package satoken

import (
	"crypto"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary tokens to the decoder and verifier: they must
// never panic, and nothing but the signer's own tokens may verify.
func FuzzVerify(f *testing.F) {
	k, err := GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	s, err := NewSigner(k)
	if err != nil {
		f.Fatal(err)
	}
	good, err := s.Sign(claims(t0, time.Hour, issuer))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{good, "", "a.b.c", "abcdef.0123456789abcdef", "eyJhbGciOiJub25lIn0.e30.",
		good[:len(good)-4], good + "x"} {
		f.Add(seed)
	}
	v, err := NewVerifier(VerifierConfig{Keys: []crypto.PublicKey{s.Public()}, Issuers: []string{issuer}, Audiences: []string{issuer},
		Now: func() time.Time { return t0 }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		_ = LooksLikeJWT(tok)
		if p, err := Parse(tok); err == nil {
			_ = p.KeyID()
		}
		c, err := v.Verify(tok)
		if err == nil && tok != good {
			// another encoding of the same signed bytes may verify only
			// if it carries the same claims
			if c.Subject != Subject("ns", "sa") {
				t.Fatalf("forged token verified: %q", tok)
			}
		}
	})
}
