// Package satoken signs and verifies service-account tokens: compact JSON
// Web Tokens (RFC 7519) with upstream Kubernetes' claims, signed ES256
// (ECDSA P-256) or RS256 (RSA PKCS#1 v1.5, SHA-256).
//
// The package does signatures, encoding and the time and audience checks;
// whether the service account, pod or secret a token names still exists
// is the API server's question.
package satoken

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// Leeway is how far clocks may disagree when exp and nbf are checked, as
// upstream allows.
const Leeway = time.Minute

// maxTokenBytes bounds what Parse reads; real tokens are about 1 KiB.
const maxTokenBytes = 16 << 10

// Errors returned by Verifier.Verify.
var (
	ErrMalformed   = errors.New("malformed token")
	ErrSignature   = errors.New("invalid token signature")
	ErrExpired     = errors.New("token has expired")
	ErrNotYetValid = errors.New("token is not valid yet")
	ErrIssuer      = errors.New("token issuer is not accepted")
	ErrAudience    = errors.New("token audiences are not accepted")
)

// Claims are a service-account token's claims, with upstream's names.
type Claims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  Audience `json:"aud"`
	Expiry    int64    `json:"exp"`
	IssuedAt  int64    `json:"iat"`
	NotBefore int64    `json:"nbf"`
	ID        string   `json:"jti,omitempty"`
	// Kubernetes is the private "kubernetes.io" claim.
	Kubernetes *Private `json:"kubernetes.io,omitempty"`
}

// Private is the "kubernetes.io" claim: what the token is bound to.
type Private struct {
	Namespace      string `json:"namespace"`
	ServiceAccount Ref    `json:"serviceaccount"`
	Pod            *Ref   `json:"pod,omitempty"`
	Secret         *Ref   `json:"secret,omitempty"`
	Node           *Ref   `json:"node,omitempty"`
	// WarnAfter is set on tokens whose lifetime the server extended: a
	// client still using the token after this time is stale.
	WarnAfter *int64 `json:"warnafter,omitempty"`
}

// Ref names an object by name and uid.
type Ref struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// Audience is the aud claim: one string or an array on the wire (RFC 7519
// allows both); always an array when encoded.
type Audience []string

// UnmarshalJSON accepts a string or an array of strings.
func (a *Audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = Audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("aud: %w", err)
	}
	*a = many
	return nil
}

// Subject returns the sub claim of a service account:
// system:serviceaccount:<namespace>:<name>.
func Subject(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid,omitempty"`
	Typ string `json:"typ,omitempty"`
}

// Signer signs tokens with one private key.
type Signer struct {
	key crypto.Signer
	alg string
	kid string
}

// NewSigner returns a signer for an ECDSA P-256 or RSA (2048 bits or
// more) key.
func NewSigner(key crypto.Signer) (*Signer, error) {
	alg, err := algFor(key.Public())
	if err != nil {
		return nil, err
	}
	kid, err := KeyID(key.Public())
	if err != nil {
		return nil, err
	}
	return &Signer{key: key, alg: alg, kid: kid}, nil
}

// Public returns the public key tokens are verified with.
func (s *Signer) Public() crypto.PublicKey { return s.key.Public() }

// KeyID returns the kid this signer puts in token headers.
func (s *Signer) KeyID() string { return s.kid }

// Sign encodes and signs c.
func (s *Signer) Sign(c Claims) (string, error) {
	h, err := json.Marshal(header{Alg: s.alg, Kid: s.kid})
	if err != nil {
		return "", err
	}
	if c.Audience == nil {
		c.Audience = Audience{}
	}
	p, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	sum := sha256.Sum256([]byte(signed))
	var sig []byte
	switch k := s.key.(type) {
	case *ecdsa.PrivateKey:
		r, ss, err := ecdsa.Sign(rand.Reader, k, sum[:])
		if err != nil {
			return "", fmt.Errorf("sign token: %w", err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
	default:
		if sig, err = s.key.Sign(rand.Reader, sum[:], crypto.SHA256); err != nil {
			return "", fmt.Errorf("sign token: %w", err)
		}
	}
	return signed + "." + enc.EncodeToString(sig), nil
}

// algFor returns the JWS algorithm of a public key.
func algFor(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", errors.New("satoken: only the P-256 curve is supported for ECDSA keys")
		}
		return "ES256", nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", errors.New("satoken: RSA keys must have at least 2048 bits")
		}
		return "RS256", nil
	}
	return "", fmt.Errorf("satoken: unsupported key type %T", pub)
}

// KeyID is upstream's kid for a public key: the unpadded base64url
// SHA-256 of its PKIX DER encoding.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("satoken: key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// Token is a parsed token whose signature is not yet checked.
type Token struct {
	header header
	Claims Claims
	signed string
	sig    []byte
}

// LooksLikeJWT says whether tok has the shape of a compact JWS (three
// dot-separated parts whose header is a JSON object), so that an
// authenticator can pass other bearer tokens on without logging noise.
func LooksLikeJWT(tok string) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	h, err := base64.RawURLEncoding.DecodeString(parts[0])
	return err == nil && bytes.HasPrefix(bytes.TrimSpace(h), []byte("{"))
}

// Parse decodes a compact JWS with JSON claims without checking its
// signature.
func Parse(tok string) (*Token, error) {
	if len(tok) > maxTokenBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, maxTokenBytes)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: want 3 parts, have %d", ErrMalformed, len(parts))
	}
	enc := base64.RawURLEncoding
	hb, err := enc.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	pb, err := enc.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	sig, err := enc.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	t := &Token{signed: parts[0] + "." + parts[1], sig: sig}
	if err := json.Unmarshal(hb, &t.header); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if err := json.Unmarshal(pb, &t.Claims); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	return t, nil
}

// KeyID returns the kid of the token's header.
func (t *Token) KeyID() string { return t.header.Kid }

// Verifier checks tokens against a set of public keys.
type Verifier struct {
	keys      []verifyKey
	issuers   []string
	audiences []string
	now       func() time.Time
}

type verifyKey struct {
	pub crypto.PublicKey
	alg string
	kid string
}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Keys verify signatures; a token's kid picks one when it matches,
	// otherwise every key of the token's algorithm is tried.
	Keys []crypto.PublicKey
	// Issuers are the iss values accepted.
	Issuers []string
	// Audiences are the aud values accepted: a token must carry at least
	// one of them.
	Audiences []string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// NewVerifier builds a verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	v := &Verifier{issuers: cfg.Issuers, audiences: cfg.Audiences, now: cfg.Now}
	if v.now == nil {
		v.now = time.Now
	}
	if len(cfg.Keys) == 0 {
		return nil, errors.New("satoken: no verification keys")
	}
	for _, k := range cfg.Keys {
		alg, err := algFor(k)
		if err != nil {
			return nil, err
		}
		kid, err := KeyID(k)
		if err != nil {
			return nil, err
		}
		v.keys = append(v.keys, verifyKey{pub: k, alg: alg, kid: kid})
	}
	return v, nil
}

// Verify parses tok and checks its signature, issuer, audience, expiry
// and not-before time; it returns the claims of a valid token.
func (v *Verifier) Verify(tok string) (*Claims, error) {
	return v.VerifyFor(tok, v.audiences)
}

// VerifyFor is Verify with other accepted audiences (a TokenReview's).
func (v *Verifier) VerifyFor(tok string, audiences []string) (*Claims, error) {
	t, err := Parse(tok)
	if err != nil {
		return nil, err
	}
	if err := v.checkSignature(t); err != nil {
		return nil, err
	}
	c := &t.Claims
	if !slices.Contains(v.issuers, c.Issuer) {
		return nil, ErrIssuer
	}
	if !slices.ContainsFunc(c.Audience, func(a string) bool { return slices.Contains(audiences, a) }) {
		return nil, ErrAudience
	}
	now := v.now()
	if c.Expiry == 0 || now.After(time.Unix(c.Expiry, 0).Add(Leeway)) {
		return nil, ErrExpired
	}
	if c.NotBefore != 0 && now.Add(Leeway).Before(time.Unix(c.NotBefore, 0)) {
		return nil, ErrNotYetValid
	}
	return c, nil
}

func (v *Verifier) checkSignature(t *Token) error {
	sum := sha256.Sum256([]byte(t.signed))
	tried := false
	for _, k := range v.keys {
		if k.alg != t.header.Alg || (t.header.Kid != "" && subtle.ConstantTimeCompare([]byte(k.kid), []byte(t.header.Kid)) != 1) {
			continue
		}
		tried = true
		switch pub := k.pub.(type) {
		case *ecdsa.PublicKey:
			if len(t.sig) == 64 {
				r, s := new(big.Int).SetBytes(t.sig[:32]), new(big.Int).SetBytes(t.sig[32:])
				if ecdsa.Verify(pub, sum[:], r, s) {
					return nil
				}
			}
		case *rsa.PublicKey:
			if rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], t.sig) == nil {
				return nil
			}
		}
	}
	if !tried && t.header.Alg != "ES256" && t.header.Alg != "RS256" {
		return fmt.Errorf("%w: algorithm %q is not accepted", ErrSignature, t.header.Alg)
	}
	return ErrSignature
}

// GenerateKey returns a new ECDSA P-256 signing key.
func GenerateKey() (crypto.Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("satoken: generate key: %w", err)
	}
	return k, nil
}

// EncodeKey returns the PEM encodings of a private key (PKCS#8) and its
// public key (PKIX), as DATA_DIR/pki/sa.key and sa.pub hold them.
func EncodeKey(key crypto.Signer) (keyPEM, pubPEM []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("satoken: encode key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("satoken: encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), nil
}

// ParseKey decodes a PEM private key (PKCS#8, SEC 1 "EC PRIVATE KEY" or
// PKCS#1 "RSA PRIVATE KEY") usable by NewSigner.
func ParseKey(data []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("satoken: no PEM block in key")
	}
	var k any
	var err error
	switch b.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("satoken: parse key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("satoken: key of type %T cannot sign", k)
	}
	if _, err := algFor(s.Public()); err != nil {
		return nil, err
	}
	return s, nil
}
