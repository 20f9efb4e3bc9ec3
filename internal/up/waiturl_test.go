package up

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestWaitURL: skiff up's URL step returns only once the answers have come
// from every replica, and says how far it got when they do not.
func TestWaitURL(t *testing.T) {
	tests := []struct {
		name     string
		replicas int // pods the server rotates through
		firstBad int // requests answered 503 before the pods answer
		want     int
		wantErr  string
	}{
		{name: "all replicas answer", replicas: 3, want: 3},
		{name: "after a not-ready start", replicas: 3, firstBad: 4, want: 3},
		{name: "one replica short", replicas: 2, want: 3, wantErr: "answers came from 2 of 3 replicas"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				i := int(n.Add(1)) - 1
				if i < tt.firstBad {
					http.Error(w, "not yet", http.StatusServiceUnavailable)
					return
				}
				fmt.Fprintf(w, `{"podName":"demo-%d"}`, i%tt.replicas)
			}))
			defer srv.Close()
			err := waitURL(context.Background(), srv.URL, tt.want, 2*time.Second)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := int(n.Load()); got != tt.firstBad+tt.want {
					t.Errorf("%d requests, want %d", got, tt.firstBad+tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
