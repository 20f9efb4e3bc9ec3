package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/skiff-sh/skiff/internal/pki"
	"github.com/skiff-sh/skiff/internal/satoken"
	"github.com/skiff-sh/skiff/internal/store"
)

// ServiceAccountKeyEtcdKey is where the service-account signing key lives
// in etcd: outside the API's /registry prefix, so no API request reads it.
const ServiceAccountKeyEtcdKey = "/skiff/serviceaccount-signing-key"

// ensureServiceAccountKey returns the cluster's service-account signing
// key. etcd holds the one key every server of the cluster signs with
// (see docs/adr/0005-service-account-tokens.md); the first server to
// start creates it there, publishing DATA_DIR/pki/sa.key if the operator
// put one there, else a new ECDSA P-256 key. Each server keeps copies in
// pki/sa.key and pki/sa.pub.
func ensureServiceAccountKey(ctx context.Context, st *store.Store, pkiDir string, log *slog.Logger) (*satoken.Signer, error) {
	keyFile, pubFile := filepath.Join(pkiDir, "sa.key"), filepath.Join(pkiDir, "sa.pub")
	local, err := os.ReadFile(keyFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	stored, err := st.Get(ctx, ServiceAccountKeyEtcdKey)
	keyPEM := stored.Value
	switch {
	case errors.Is(err, store.ErrNotFound):
		if keyPEM, err = localOrNewKey(local, keyFile); err != nil {
			return nil, err
		}
		if _, err := st.Create(ctx, ServiceAccountKeyEtcdKey, keyPEM); errors.Is(err, store.ErrExists) {
			// another server created it first: use theirs
			if stored, err = st.Get(ctx, ServiceAccountKeyEtcdKey); err != nil {
				return nil, fmt.Errorf("service-account key: %w", err)
			}
			keyPEM = stored.Value
		} else if err != nil {
			return nil, fmt.Errorf("service-account key: store: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	key, err := satoken.ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("service-account key in etcd (%s): %w", ServiceAccountKeyEtcdKey, err)
	}
	if local != nil && !bytes.Equal(local, keyPEM) {
		log.Warn("the service-account key in etcd differs from the data dir's; using etcd's and replacing the copy", "file", keyFile)
	}
	_, pubPEM, err := satoken.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(local, keyPEM) {
		if err := pki.WriteFileAtomic(keyFile, keyPEM, 0o600); err != nil {
			return nil, fmt.Errorf("service-account key: %w", err)
		}
	}
	if cur, _ := os.ReadFile(pubFile); !bytes.Equal(cur, pubPEM) {
		if err := pki.WriteFileAtomic(pubFile, pubPEM, 0o644); err != nil {
			return nil, fmt.Errorf("service-account key: %w", err)
		}
	}
	return satoken.NewSigner(key)
}

// localOrNewKey returns the data dir's key, checked, or a new one.
func localOrNewKey(local []byte, keyFile string) ([]byte, error) {
	if local != nil {
		if _, err := satoken.ParseKey(local); err != nil {
			return nil, fmt.Errorf("service-account key %s: %w", keyFile, err)
		}
		return local, nil
	}
	key, err := satoken.GenerateKey()
	if err != nil {
		return nil, err
	}
	keyPEM, _, err := satoken.EncodeKey(key)
	return keyPEM, err
}
