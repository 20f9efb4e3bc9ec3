package apiserver

import (
	"net/http/httptest"
	"testing"
)

func TestParseResourcePath(t *testing.T) {
	cases := []struct {
		method, url string
		want        requestInfo
		ok          bool
	}{
		{"GET", "/api/v1/pods", requestInfo{verb: "list", version: "v1", resource: "pods"}, true},
		{"GET", "/api/v1/namespaces/default/pods", requestInfo{verb: "list", version: "v1", namespace: "default", resource: "pods"}, true},
		{"GET", "/api/v1/namespaces/default/pods?watch=true", requestInfo{verb: "watch", version: "v1", namespace: "default", resource: "pods"}, true},
		{"GET", "/api/v1/watch/namespaces/default/pods", requestInfo{verb: "watch", version: "v1", namespace: "default", resource: "pods"}, true},
		{"GET", "/api/v1/namespaces/default/pods/p1/log", requestInfo{verb: "get", version: "v1", namespace: "default", resource: "pods", name: "p1", subresource: "log"}, true},
		{"GET", "/api/v1/namespaces/default", requestInfo{verb: "get", version: "v1", resource: "namespaces", name: "default"}, true},
		{"PUT", "/api/v1/namespaces/default/finalize", requestInfo{verb: "update", version: "v1", resource: "namespaces", name: "default", subresource: "finalize"}, true},
		{"PATCH", "/api/v1/namespaces/default/status", requestInfo{verb: "patch", version: "v1", resource: "namespaces", name: "default", subresource: "status"}, true},
		{"DELETE", "/apis/apps/v1/namespaces/x/deployments", requestInfo{verb: "deletecollection", group: "apps", version: "v1", namespace: "x", resource: "deployments"}, true},
		{"DELETE", "/apis/apps/v1/namespaces/x/deployments/d", requestInfo{verb: "delete", group: "apps", version: "v1", namespace: "x", resource: "deployments", name: "d"}, true},
		{"POST", "/api/v1/namespaces/x/pods/p/binding", requestInfo{verb: "create", version: "v1", namespace: "x", resource: "pods", name: "p", subresource: "binding"}, true},
		{"GET", "/api/v1/namespaces/x/pods/p/proxy/a/b", requestInfo{verb: "get", version: "v1", namespace: "x", resource: "pods", name: "p", subresource: "proxy", rest: "a/b"}, true},
		{"GET", "/apis/apps", requestInfo{}, false},
		{"GET", "/healthz", requestInfo{}, false},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, c.url, nil)
		got, ok := parseResourcePath(r)
		if ok != c.ok {
			t.Errorf("%s %s: ok = %v, want %v", c.method, c.url, ok, c.ok)
			continue
		}
		if ok && got != c.want {
			t.Errorf("%s %s:\n got %+v\nwant %+v", c.method, c.url, got, c.want)
		}
	}
}

func TestNegotiate(t *testing.T) {
	s, err := newScheme()
	if err != nil {
		t.Fatal(err)
	}
	c := newCodecs(s)
	cases := []struct {
		accept    string
		allowed   []string
		wantMedia string
		wantAs    string
		ok        bool
	}{
		{"", nil, mediaJSON, "", true},
		{"application/json", nil, mediaJSON, "", true},
		{"application/vnd.kubernetes.protobuf, */*", nil, mediaProtobuf, "", true},
		{"application/yaml", nil, mediaYAML, "", true},
		{"application/json;as=Table;v=v1;g=meta.k8s.io,application/json", []string{"Table"}, mediaJSON, "Table", true},
		{"application/json;as=Table;v=v1;g=meta.k8s.io,application/json", nil, mediaJSON, "", true},
		{"application/json;as=Table;v=v1;g=meta.k8s.io", nil, "", "", false},
		{"text/html", nil, "", "", false},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		if tc.accept != "" {
			r.Header.Set("Accept", tc.accept)
		}
		e, ok := c.negotiate(r, tc.allowed...)
		if ok != tc.ok || (ok && (e.media != tc.wantMedia || e.as != tc.wantAs)) {
			t.Errorf("Accept %q allowed %v: got (%q, as %q, %v), want (%q, as %q, %v)", tc.accept, tc.allowed, e.media, e.as, ok, tc.wantMedia, tc.wantAs, tc.ok)
		}
	}
}
