// Package registry serves images that internal/image builds over the OCI
// distribution API (v2), read-only: GET and HEAD of /v2/, of manifests by
// tag or digest and of blobs, optionally behind HTTP basic auth. It is
// what a containerd pulls from in tests of image pulls and pull secrets;
// it speaks plain HTTP (TLS is the caller's http.Server's business).
package registry

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"

	digest "github.com/opencontainers/go-digest"

	"github.com/skiff-sh/skiff/internal/image"
)

// Config configures a registry.
type Config struct {
	// Users maps user names to passwords. When it is not empty every
	// request needs basic auth of one of them (401 with a Basic challenge
	// otherwise); empty serves anyone.
	Users map[string]string
	// Realm is the basic-auth realm; empty means "skiff".
	Realm string
	// Logger receives one debug line per request; nil discards them.
	Logger *slog.Logger
}

// Registry is an http.Handler serving the images added to it.
type Registry struct {
	cfg Config
	log *slog.Logger

	mu    sync.RWMutex
	repos map[string]*repository
}

// repository is one repository's tags, manifests and blobs.
type repository struct {
	tags      map[string]digest.Digest
	manifests map[digest.Digest]string // digest → media type (content in blobs)
	blobs     map[digest.Digest][]byte
}

// New returns an empty registry.
func New(cfg Config) *Registry {
	if cfg.Realm == "" {
		cfg.Realm = "skiff"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{cfg: cfg, log: log.With("component", "registry"), repos: map[string]*repository{}}
}

// repoName is a repository name of the distribution spec.
var repoName = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

// tagName is a tag of the distribution spec.
var tagName = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// Add serves img as repo:tag ("skiff/busybox", "latest"): its manifest
// by tag and digest, and its config and layer blobs.
func (r *Registry) Add(repo, tag string, img *image.Image) error {
	if !repoName.MatchString(repo) {
		return fmt.Errorf("registry: invalid repository name %q", repo)
	}
	if !tagName.MatchString(tag) {
		return fmt.Errorf("registry: invalid tag %q", tag)
	}
	m := img.Manifest
	if _, ok := img.Blobs[m.Digest]; !ok {
		return fmt.Errorf("registry: image %s has no manifest blob", img.Name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.repos[repo]
	if rp == nil {
		rp = &repository{tags: map[string]digest.Digest{}, manifests: map[digest.Digest]string{}, blobs: map[digest.Digest][]byte{}}
		r.repos[repo] = rp
	}
	for d, b := range img.Blobs {
		rp.blobs[d] = b
	}
	rp.manifests[m.Digest] = m.MediaType
	rp.tags[tag] = m.Digest
	return nil
}

// ServeHTTP implements http.Handler.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.log.Debug("request", "method", req.Method, "path", req.URL.Path, "remote", req.RemoteAddr)
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if !strings.HasPrefix(req.URL.Path, "/v2/") {
		http.NotFound(w, req)
		return
	}
	if !r.authorized(req) {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", r.cfg.Realm))
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the registry is read-only")
		return
	}
	p := strings.TrimPrefix(req.URL.Path, "/v2/")
	if p == "" {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		if req.Method == http.MethodGet {
			_, _ = w.Write([]byte("{}"))
		}
		return
	}
	for _, kind := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(p, kind); i > 0 {
			r.serveObject(w, req, p[:i], kind == "/manifests/", p[i+len(kind):])
			return
		}
	}
	writeError(w, http.StatusNotFound, "NAME_UNKNOWN", "unknown path")
}

// authorized checks basic auth against the users, in constant time per
// password.
func (r *Registry) authorized(req *http.Request) bool {
	if len(r.cfg.Users) == 0 {
		return true
	}
	user, pass, ok := req.BasicAuth()
	if !ok {
		return false
	}
	want, known := r.cfg.Users[user]
	return known && subtle.ConstantTimeCompare([]byte(pass), []byte(want)) == 1
}

// serveObject serves a manifest (by tag or digest) or a blob (by digest)
// of a repository.
func (r *Registry) serveObject(w http.ResponseWriter, req *http.Request, repo string, manifest bool, ref string) {
	r.mu.RLock()
	rp := r.repos[repo]
	var (
		d         digest.Digest
		mediaType = "application/octet-stream"
		body      []byte
		found     bool
	)
	if rp != nil {
		if manifest {
			d = rp.tags[ref]
			if d == "" {
				d = digest.Digest(ref)
			}
			var isManifest bool
			if mediaType, isManifest = rp.manifests[d]; isManifest {
				body, found = rp.blobs[d]
			}
		} else {
			d = digest.Digest(ref)
			body, found = rp.blobs[d]
		}
	}
	r.mu.RUnlock()
	switch {
	case rp == nil:
		writeError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
		return
	case !found && manifest:
		writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
		return
	case !found:
		writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("ETag", `"`+d.String()+`"`)
	if req.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// writeError writes the distribution spec's error body.
func writeError(w http.ResponseWriter, status int, code, message string) {
	type errorInfo struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(struct {
		Errors []errorInfo `json:"errors"`
	}{[]errorInfo{{code, message}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
