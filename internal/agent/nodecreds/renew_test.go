package nodecreds

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestRenewalTime(t *testing.T) {
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		notBefore time.Time
		notAfter  time.Time
		want      time.Time
	}{
		// skiff's signer: NotBefore 5 minutes before issue
		{"one year, backdated", issued.Add(-5 * time.Minute), issued.Add(365 * 24 * time.Hour), issued.Add(time.Duration(0.8 * float64(365*24*time.Hour)))},
		{"20 seconds, backdated", issued.Add(-5 * time.Minute), issued.Add(20 * time.Second), issued.Add(16 * time.Second)},
		// a certificate shorter than the backdating: counted from NotBefore
		{"not backdated, short", issued, issued.Add(100 * time.Second), issued.Add(80 * time.Second)},
	}
	for _, tt := range tests {
		got := renewalTime(&x509.Certificate{NotBefore: tt.notBefore, NotAfter: tt.notAfter})
		if d := got.Sub(tt.want); d > time.Millisecond || d < -time.Millisecond {
			t.Errorf("%s: renewal at %s, want %s", tt.name, got, tt.want)
		}
	}
}
