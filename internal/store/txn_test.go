package store_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/skiff-sh/skiff/internal/store"
)

func TestTxn(t *testing.T) {
	ctx := context.Background()
	st, err := store.New(ctx, store.Config{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	rev, err := st.Txn(ctx, store.Op{Type: store.OpCreate, Key: "/a", Value: []byte("1")},
		store.Op{Type: store.OpCreate, Key: "/b", Value: []byte("2")})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		ops       []store.Op
		wantErr   error
		wantIndex int
	}{
		{"create existing", []store.Op{{Type: store.OpCreate, Key: "/c"}, {Type: store.OpCreate, Key: "/a"}}, store.ErrExists, 1},
		{"update stale", []store.Op{{Type: store.OpUpdate, Key: "/a", Rev: rev - 1}}, store.ErrConflict, 0},
		{"update missing", []store.Op{{Type: store.OpCreate, Key: "/c"}, {Type: store.OpUpdate, Key: "/x", Rev: rev}}, store.ErrNotFound, 1},
		{"delete stale", []store.Op{{Type: store.OpRemove, Key: "/b"}, {Type: store.OpDelete, Key: "/a", Rev: 1}}, store.ErrConflict, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := st.Txn(ctx, c.ops...)
			var te *store.TxnError
			if !errors.Is(err, c.wantErr) || !errors.As(err, &te) || te.Index != c.wantIndex {
				t.Fatalf("err = %v, want %v at %d", err, c.wantErr, c.wantIndex)
			}
		})
	}
	// nothing of the failed transactions was applied
	if _, err := st.Get(ctx, "/c"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("/c: %v, want not found", err)
	}
	if _, err := st.Get(ctx, "/b"); err != nil {
		t.Fatalf("/b: %v", err)
	}
	// a good transaction applies all its operations
	if _, err := st.Txn(ctx, store.Op{Type: store.OpUpdate, Key: "/a", Value: []byte("3"), Rev: rev},
		store.Op{Type: store.OpRemove, Key: "/b"}, store.Op{Type: store.OpRemove, Key: "/none"},
		store.Op{Type: store.OpCreate, Key: "/c", Value: []byte("4")}); err != nil {
		t.Fatal(err)
	}
	if kv, err := st.Get(ctx, "/a"); err != nil || string(kv.Value) != "3" {
		t.Fatalf("/a = %q, %v", kv.Value, err)
	}
	if _, err := st.Get(ctx, "/b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("/b: %v, want not found", err)
	}
	if kv, err := st.Get(ctx, "/c"); err != nil || string(kv.Value) != "4" {
		t.Fatalf("/c = %q, %v", kv.Value, err)
	}
}
