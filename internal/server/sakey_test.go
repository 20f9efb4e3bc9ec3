package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/skiff-sh/skiff/internal/satoken"
	"github.com/skiff-sh/skiff/internal/store"
)

// keyStore is an embedded etcd for the test.
func keyStore(t *testing.T) (context.Context, *slog.Logger, *store.Store) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.New(context.Background(), store.Config{DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return context.Background(), log, st
}

func TestServiceAccountKeySharedThroughEtcd(t *testing.T) {
	ctx, log, st := keyStore(t)

	// an operator's key in the first server's data dir is what etcd gets
	first := t.TempDir()
	own, err := satoken.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ownPEM, _, err := satoken.EncodeKey(own)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(first, "sa.key"), ownPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := ensureServiceAccountKey(ctx, st, first, log)
	if err != nil {
		t.Fatal(err)
	}
	wantKid, _ := satoken.KeyID(own.Public())
	if a.KeyID() != wantKid {
		t.Errorf("first server signs with %s, want the data dir's key %s", a.KeyID(), wantKid)
	}
	// a second server (own data dir, with a stale key of its own) and a
	// restart of the first get the same key
	second := t.TempDir()
	stale, _ := satoken.GenerateKey()
	stalePEM, _, _ := satoken.EncodeKey(stale)
	if err := os.WriteFile(filepath.Join(second, "sa.key"), stalePEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{second, first} {
		b, err := ensureServiceAccountKey(ctx, st, dir, log)
		if err != nil {
			t.Fatal(err)
		}
		if b.KeyID() != a.KeyID() {
			t.Errorf("%s: key %s, want the shared %s", dir, b.KeyID(), a.KeyID())
		}
		got, err := os.ReadFile(filepath.Join(dir, "sa.key"))
		if err != nil || !bytes.Equal(got, ownPEM) {
			t.Errorf("%s: sa.key is not etcd's key (%v)", dir, err)
		}
		if fi, err := os.Stat(filepath.Join(dir, "sa.key")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: sa.key mode %v (%v)", dir, fi.Mode(), err)
		}
		if pub, err := os.ReadFile(filepath.Join(dir, "sa.pub")); err != nil || !bytes.Contains(pub, []byte("PUBLIC KEY")) {
			t.Errorf("%s: sa.pub %q (%v)", dir, pub, err)
		}
	}
}

func TestServiceAccountKeyCreatedOnce(t *testing.T) {
	ctx, log, st := keyStore(t)
	kids := make(chan string, 4)
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		dir := t.TempDir()
		go func() {
			s, err := ensureServiceAccountKey(ctx, st, dir, log)
			if err != nil {
				errs <- err
				return
			}
			kids <- s.KeyID()
		}()
	}
	var first string
	for i := 0; i < 4; i++ {
		select {
		case err := <-errs:
			t.Fatal(err)
		case kid := <-kids:
			if first == "" {
				first = kid
			} else if kid != first {
				t.Errorf("servers starting together got keys %s and %s", first, kid)
			}
		}
	}
}
