package cri

import (
	"encoding/base64"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestImageRepository(t *testing.T) {
	for _, tc := range []struct{ image, want string }{
		{"busybox", "docker.io/library/busybox"},
		{"busybox:1.36", "docker.io/library/busybox"},
		{"library/busybox@sha256:abcd", "docker.io/library/busybox"},
		{"team/app:v1", "docker.io/team/app"},
		{"docker.io/busybox", "docker.io/library/busybox"},
		{"index.docker.io/team/app", "docker.io/team/app"},
		{"localhost/app", "localhost/app"},
		{"localhost:5000/app:1", "localhost:5000/app"},
		{"registry.example.com/a/b/c:tag", "registry.example.com/a/b/c"},
		{"10.250.0.1:5000/skiff/busybox:latest", "10.250.0.1:5000/skiff/busybox"},
		{"Registry/app", "Registry/app"}, // upper case: a host, as docker reads it
		{"r.example.com:443/app@sha256:0123", "r.example.com:443/app"},
	} {
		got, err := imageRepository(tc.image)
		if err != nil || got != tc.want {
			t.Errorf("imageRepository(%q) = %q, %v; want %q", tc.image, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", ":tag", "/app", "app/", "a//b", "@sha256:00"} {
		if got, err := imageRepository(bad); err == nil {
			t.Errorf("imageRepository(%q) = %q, want an error", bad, got)
		}
	}
}

func TestRegistryKey(t *testing.T) {
	for _, tc := range []struct {
		loc, want string
		ok        bool
	}{
		{"registry.example.com", "registry.example.com", true},
		{"https://registry.example.com", "registry.example.com", true},
		{"http://registry.example.com:5000/", "registry.example.com:5000", true},
		{"https://index.docker.io/v1/", "index.docker.io", true},
		{"registry.example.com/v2/team", "registry.example.com/team", true},
		{"registry.example.com/team/", "registry.example.com/team/", true},
		{"*.example.com", "*.example.com", true},
		{"https://", "", false},
		{"%zz", "", false},
	} {
		got, ok := registryKey(tc.loc)
		if got != tc.want || ok != tc.ok {
			t.Errorf("registryKey(%q) = %q, %v; want %q, %v", tc.loc, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRegistryKeyMatches(t *testing.T) {
	for _, tc := range []struct {
		key, repo string
		want      bool
	}{
		{"registry.example.com", "registry.example.com/app", true},
		{"registry.example.com", "registry.example.com:5000/app", false}, // port differs
		{"registry.example.com:5000", "registry.example.com:5000/app", true},
		{"registry.example.com:5000", "registry.example.com:5001/app", false},
		{"registry.example.com:5000", "registry.example.com/app", false},
		{"registry.example.com/team", "registry.example.com/team/app", true},
		{"registry.example.com/team", "registry.example.com/teamwork/app", true}, // a string prefix, as upstream
		{"registry.example.com/team", "registry.example.com/other/app", false},
		{"registry.example.com/team/app", "registry.example.com/team", false},
		{"*.example.com", "registry.example.com/app", true},
		{"*.example.com", "example.com/app", false},            // parts differ in number
		{"*.example.com", "a.registry.example.com/app", false}, // parts differ in number
		{"*.*.example.com", "a.registry.example.com/app", true},
		{"*.example.com:5000", "r.example.com:5000/app", true},
		{"reg-*.example.com", "reg-1.example.com/app", true},
		{"reg-?.example.com", "reg-1.example.com/app", false}, // "?" starts a query, as upstream parses it
		{"other.example.com", "registry.example.com/app", false},
		{"example.com", "registry.example.com/app", false},
		{"[", "registry.example.com/app", false}, // bad glob
		{"10.250.0.1:5000", "10.250.0.1:5000/skiff/busybox", true},
	} {
		if got := registryKeyMatches(tc.key, tc.repo); got != tc.want {
			t.Errorf("registryKeyMatches(%q, %q) = %v, want %v", tc.key, tc.repo, got, tc.want)
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestDecodeDockerConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		json    string
		cfgJSON bool // .dockerconfigjson, else .dockercfg
		want    dockerConfig
		err     string
	}{
		{name: "username and password", cfgJSON: true,
			json: `{"auths":{"r.example.com":{"username":"u","password":"p","email":"e@x"}}}`,
			want: dockerConfig{"r.example.com": {Username: "u", Password: "p", Email: "e@x"}}},
		{name: "auth overrides username", cfgJSON: true,
			json: `{"auths":{"r.example.com":{"username":"x","auth":"` + b64("u:p:with:colons") + `"}}}`,
			want: dockerConfig{"r.example.com": {Username: "u", Password: "p:with:colons", Auth: b64("u:p:with:colons")}}},
		{name: "unpadded auth", cfgJSON: true,
			json: `{"auths":{"r":{"auth":"` + strings.TrimRight(b64("ab:c"), "=") + `"}}}`,
			want: dockerConfig{"r": {Username: "ab", Password: "c", Auth: strings.TrimRight(b64("ab:c"), "=")}}},
		{name: "tokens", cfgJSON: true,
			json: `{"auths":{"r":{"identitytoken":"id","registrytoken":"reg"}}}`,
			want: dockerConfig{"r": {IdentityToken: "id", RegistryToken: "reg"}}},
		{name: "dockercfg", json: `{"https://index.docker.io/v1/":{"auth":"` + b64("u:p") + `"}}`,
			want: dockerConfig{"https://index.docker.io/v1/": {Username: "u", Password: "p", Auth: b64("u:p")}}},
		{name: "no auths", cfgJSON: true, json: `{}`, want: nil},
		{name: "auth without colon", cfgJSON: true, json: `{"auths":{"r":{"auth":"` + b64("nocolon") + `"}}}`, err: "base64(username:password)"},
		{name: "auth not base64", cfgJSON: true, json: `{"auths":{"r":{"auth":"!!"}}}`, err: "auth:"},
		{name: "not json", json: `{`, err: "unexpected end"},
		{name: "wrong shape", cfgJSON: true, json: `{"auths":[]}`, err: "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decode := decodeDockercfg
			if tc.cfgJSON {
				decode = decodeDockerConfigJSON
			}
			got, err := decode([]byte(tc.json))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestSecretDockerConfig(t *testing.T) {
	js := []byte(`{"auths":{"r":{"username":"u","password":"p"}}}`)
	cfg := []byte(`{"r":{"username":"u","password":"p"}}`)
	want := dockerConfig{"r": {Username: "u", Password: "p"}}
	for _, tc := range []struct {
		name string
		s    corev1.Secret
		want dockerConfig
		err  bool
	}{
		{"dockerconfigjson", corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: js}}, want, false},
		{"dockercfg", corev1.Secret{Type: corev1.SecretTypeDockercfg, Data: map[string][]byte{corev1.DockerConfigKey: cfg}}, want, false},
		{"opaque with the key", corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{corev1.DockerConfigJsonKey: js}}, nil, false},
		{"type without its key", corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigKey: cfg}}, nil, false},
		{"empty key", corev1.Secret{Type: corev1.SecretTypeDockercfg, Data: map[string][]byte{corev1.DockerConfigKey: nil}}, nil, false},
		{"bad json", corev1.Secret{Type: corev1.SecretTypeDockercfg, Data: map[string][]byte{corev1.DockerConfigKey: []byte("[")}}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.ObjectMeta = metav1.ObjectMeta{Namespace: "ns", Name: "s"}
			got, err := secretDockerConfig(&tc.s)
			if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v (error %v)", got, err, tc.want, tc.err)
			}
			if err != nil && !strings.Contains(err.Error(), "ns/s") {
				t.Errorf("error %q does not name the secret", err)
			}
		})
	}
}

func TestKeyringLookup(t *testing.T) {
	var k keyring
	k.add("first", dockerConfig{
		"https://index.docker.io/v1/":   {Username: "hub"},
		"r.example.com":                 {Username: "host"},
		"r.example.com/team":            {Username: "team"},
		"http://r.example.com:5000/v2/": {Username: "port"},
		"*.wild.example.com":            {Username: "wild"},
		"10.250.0.1:5000":               {Username: "ip", Password: "pw"},
		"://bad":                        {Username: "bad"},
	})
	k.add("second", dockerConfig{"r.example.com": {Username: "host2"}, "docker.io": {Username: "hub-short"}})
	users := func(cs []credential) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.auth.Username+"@"+c.secret)
		}
		return out
	}
	for _, tc := range []struct {
		image string
		want  []string
	}{
		{"r.example.com/team/app:1", []string{"team@first", "host@first", "host2@second"}},
		{"r.example.com/other/app", []string{"host@first", "host2@second"}},
		{"r.example.com:5000/app", []string{"port@first"}},
		{"r.example.com:5001/app", nil},
		{"a.wild.example.com/app", []string{"wild@first"}},
		{"wild.example.com/app", nil},
		{"10.250.0.1:5000/skiff/busybox:latest", []string{"ip@first"}},
		// Docker Hub: the "docker.io" key matches by host; index.docker.io is the fallback
		{"busybox", []string{"hub-short@second"}},
		{"other.example.com/app", nil},
		{"", nil},
	} {
		if got := users(k.lookup(tc.image)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("lookup(%q) = %v, want %v", tc.image, got, tc.want)
		}
	}
	var hubOnly keyring
	hubOnly.add("s", dockerConfig{"https://index.docker.io/v1/": {Username: "hub"}})
	for _, img := range []string{"busybox", "team/app:1", "docker.io/team/app"} {
		if got := users(hubOnly.lookup(img)); !reflect.DeepEqual(got, []string{"hub@s"}) {
			t.Errorf("lookup(%q) = %v, want Docker Hub's credentials", img, got)
		}
	}
	if got := hubOnly.lookup("quay.io/team/app"); len(got) != 0 {
		t.Errorf("Docker Hub credentials for quay.io: %v", users(got))
	}
	if got := k.lookup("10.250.0.1:5000/skiff/busybox")[0].auth; got.Password != "pw" {
		t.Errorf("auth %+v", got)
	}
}

// FuzzDecodeDockerConfig feeds secrets' untrusted docker configs to the
// decoders and the keyring: no panics, and every decoded entry has the
// username and password its auth field says.
func FuzzDecodeDockerConfig(f *testing.F) {
	for _, seed := range []string{
		`{"auths":{"r.example.com":{"username":"u","password":"p"}}}`,
		`{"auths":{"r":{"auth":"` + b64("u:p") + `"}}}`,
		`{"auths":{"*.example.com:5000/x":{"identitytoken":"t"}}}`,
		`{"https://index.docker.io/v1/":{"auth":"` + b64("a:b") + `","email":"e"}}`,
		`{"auths":{"r":{"auth":"!!"}}}`,
		`{"auths":null}`, `[]`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, decode := range []func([]byte) (dockerConfig, error){decodeDockerConfigJSON, decodeDockercfg} {
			cfg, err := decode(b)
			if err != nil {
				continue
			}
			for loc, e := range cfg {
				if e.Auth != "" {
					u, p, err := decodeAuthField(e.Auth)
					if err != nil || u != e.Username || p != e.Password {
						t.Fatalf("%q: entry %+v does not carry its auth field", loc, e)
					}
				}
			}
			var k keyring
			k.add("s", cfg)
			for _, key := range k.index {
				_ = k.lookup(key + "/app:latest")
			}
		}
	})
}
