package registry_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/skiff-sh/skiff/internal/image"
	"github.com/skiff-sh/skiff/internal/image/registry"
)

func testImage(t *testing.T) *image.Image {
	t.Helper()
	img, err := image.Build(image.Spec{Name: "skiff.local/hello:latest",
		Files:  []image.File{{Path: "/hello", Mode: 0o755, Data: []byte("#!/bin/sh\necho hi\n")}},
		Config: image.Config{Cmd: []string{"/hello"}}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestRegistry(t *testing.T) {
	img := testImage(t)
	reg := registry.New(registry.Config{Users: map[string]string{"alice": "s3cret"}})
	if err := reg.Add("team/hello", "v1", img); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	defer srv.Close()

	manifest := img.Blobs[img.Digest()]
	layer := img.Blobs[img.Layer.Digest]
	type want struct {
		status      int
		body        []byte // nil: not checked
		contentType string
		digest      digest.Digest
		errCode     string
	}
	for _, tc := range []struct {
		name, method, path string
		user, pass         string
		want               want
	}{
		{"base without auth", "GET", "/v2/", "", "", want{status: 401, errCode: "UNAUTHORIZED"}},
		{"base with a wrong password", "GET", "/v2/", "alice", "nope", want{status: 401, errCode: "UNAUTHORIZED"}},
		{"base with an unknown user", "GET", "/v2/", "bob", "s3cret", want{status: 401, errCode: "UNAUTHORIZED"}},
		{"base", "GET", "/v2/", "alice", "s3cret", want{status: 200, body: []byte("{}")}},
		{"manifest without auth", "GET", "/v2/team/hello/manifests/v1", "", "", want{status: 401, errCode: "UNAUTHORIZED"}},
		{"manifest by tag", "GET", "/v2/team/hello/manifests/v1", "alice", "s3cret",
			want{status: 200, body: manifest, contentType: ocispec.MediaTypeImageManifest, digest: img.Digest()}},
		{"manifest by digest", "GET", "/v2/team/hello/manifests/" + img.Digest().String(), "alice", "s3cret",
			want{status: 200, body: manifest, contentType: ocispec.MediaTypeImageManifest, digest: img.Digest()}},
		{"manifest head", "HEAD", "/v2/team/hello/manifests/v1", "alice", "s3cret",
			want{status: 200, body: []byte{}, contentType: ocispec.MediaTypeImageManifest, digest: img.Digest()}},
		{"unknown tag", "GET", "/v2/team/hello/manifests/v2", "alice", "s3cret", want{status: 404, errCode: "MANIFEST_UNKNOWN"}},
		{"a blob is no manifest", "GET", "/v2/team/hello/manifests/" + img.Layer.Digest.String(), "alice", "s3cret",
			want{status: 404, errCode: "MANIFEST_UNKNOWN"}},
		{"layer blob", "GET", "/v2/team/hello/blobs/" + img.Layer.Digest.String(), "alice", "s3cret",
			want{status: 200, body: layer, digest: img.Layer.Digest}},
		{"config blob head", "HEAD", "/v2/team/hello/blobs/" + img.Config.Digest.String(), "alice", "s3cret",
			want{status: 200, body: []byte{}, digest: img.Config.Digest}},
		{"unknown blob", "GET", "/v2/team/hello/blobs/" + digest.FromString("x").String(), "alice", "s3cret", want{status: 404, errCode: "BLOB_UNKNOWN"}},
		{"unknown repository", "GET", "/v2/team/other/manifests/v1", "alice", "s3cret", want{status: 404, errCode: "NAME_UNKNOWN"}},
		{"push refused", "PUT", "/v2/team/hello/manifests/v1", "alice", "s3cret", want{status: 405, errCode: "UNSUPPORTED"}},
		{"not the API", "GET", "/v1/", "alice", "s3cret", want{status: 404}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.want.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want.status, body)
			}
			if tc.want.status == 401 && resp.Header.Get("WWW-Authenticate") != `Basic realm="skiff"` {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
			if strings.HasPrefix(tc.path, "/v2/") && resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
				t.Errorf("no API version header")
			}
			if tc.want.body != nil && string(body) != string(tc.want.body) {
				t.Errorf("body %d bytes, want %d", len(body), len(tc.want.body))
			}
			if tc.want.body != nil && tc.method == "HEAD" {
				if resp.ContentLength <= 0 {
					t.Errorf("HEAD: content length %d", resp.ContentLength)
				}
			}
			if tc.want.contentType != "" && resp.Header.Get("Content-Type") != tc.want.contentType {
				t.Errorf("content type %q, want %q", resp.Header.Get("Content-Type"), tc.want.contentType)
			}
			if tc.want.digest != "" && resp.Header.Get("Docker-Content-Digest") != tc.want.digest.String() {
				t.Errorf("digest %q, want %q", resp.Header.Get("Docker-Content-Digest"), tc.want.digest)
			}
			if tc.want.errCode != "" {
				var e struct {
					Errors []struct{ Code string } `json:"errors"`
				}
				if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != tc.want.errCode {
					t.Errorf("error body %s, want code %s", body, tc.want.errCode)
				}
			}
		})
	}
}

func TestRegistryAnonymous(t *testing.T) {
	reg := registry.New(registry.Config{})
	if err := reg.Add("hello", "latest", testImage(t)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/v2/hello/manifests/latest")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d, want 200 without users", resp.StatusCode)
	}
}

func TestAddRejectsBadNames(t *testing.T) {
	reg := registry.New(registry.Config{})
	img := testImage(t)
	for _, tc := range []struct{ repo, tag string }{
		{"Upper/case", "v1"}, {"", "v1"}, {"a//b", "v1"}, {"a/b", ""}, {"a/b", "-dash"}, {"a/b", "has/slash"},
	} {
		if err := reg.Add(tc.repo, tc.tag, img); err == nil {
			t.Errorf("Add(%q, %q) accepted", tc.repo, tc.tag)
		}
	}
}
