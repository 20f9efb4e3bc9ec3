package cri

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// This file is the kubelet's credential keyring for image pull secrets,
// as pure logic: decoding docker configs (.dockerconfigjson, .dockercfg)
// and finding the credentials whose registry key matches an image.

// defaultRegistryHost is the key Docker Hub's credentials are kept under
// (docker login writes "https://index.docker.io/v1/").
const defaultRegistryHost = "index.docker.io"

// dockerConfigEntry is one registry's credentials in a docker config.
type dockerConfigEntry struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Email         string `json:"email,omitempty"`
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

// dockerConfig maps registry keys ("registry.example.com:5000/team",
// "https://index.docker.io/v1/", "*.example.com") to credentials: a
// .dockercfg, or the "auths" of a .dockerconfigjson.
type dockerConfig map[string]dockerConfigEntry

// decodeDockerConfigJSON decodes a kubernetes.io/dockerconfigjson
// secret's .dockerconfigjson ({"auths": {...}}).
func decodeDockerConfigJSON(b []byte) (dockerConfig, error) {
	var v struct {
		Auths dockerConfig `json:"auths"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return v.Auths, v.Auths.decodeAuths()
}

// decodeDockercfg decodes a kubernetes.io/dockercfg secret's .dockercfg
// (the registry map itself).
func decodeDockercfg(b []byte) (dockerConfig, error) {
	var cfg dockerConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, err
	}
	return cfg, cfg.decodeAuths()
}

// decodeAuths replaces username and password with those of each entry's
// auth field (base64 of "username:password"), as the kubelet does.
func (cfg dockerConfig) decodeAuths() error {
	for k, e := range cfg {
		if e.Auth == "" {
			continue
		}
		user, pass, err := decodeAuthField(e.Auth)
		if err != nil {
			return fmt.Errorf("credentials for %q: %w", k, err)
		}
		e.Username, e.Password = user, pass
		cfg[k] = e
	}
	return nil
}

// decodeAuthField decodes base64("username:password"), padded or not.
func decodeAuthField(field string) (user, pass string, err error) {
	field = strings.TrimSpace(field)
	enc := base64.RawStdEncoding
	if strings.HasSuffix(field, "=") {
		enc = base64.StdEncoding
	}
	b, err := enc.DecodeString(field)
	if err != nil {
		return "", "", fmt.Errorf("auth: %w", err)
	}
	user, pass, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", errors.New("auth must be formatted as base64(username:password)")
	}
	return user, pass, nil
}

// secretDockerConfig reads the docker config of a pull secret: the
// .dockerconfigjson of a kubernetes.io/dockerconfigjson secret or the
// .dockercfg of a kubernetes.io/dockercfg one. Other secrets, and those
// without the key, have none (nil, nil).
func secretDockerConfig(s *corev1.Secret) (dockerConfig, error) {
	var (
		cfg dockerConfig
		err error
	)
	switch {
	case s.Type == corev1.SecretTypeDockerConfigJson && len(s.Data[corev1.DockerConfigJsonKey]) > 0:
		cfg, err = decodeDockerConfigJSON(s.Data[corev1.DockerConfigJsonKey])
	case s.Type == corev1.SecretTypeDockercfg && len(s.Data[corev1.DockerConfigKey]) > 0:
		cfg, err = decodeDockercfg(s.Data[corev1.DockerConfigKey])
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image pull secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return cfg, nil
}

// credential is one set of credentials for the registry key it was
// listed under.
type credential struct {
	key    string // the normalized registry key it matched by
	secret string // the pull secret it came from
	auth   *runtimeapi.AuthConfig
}

// keyring holds the credentials of a pod's pull secrets by registry key.
type keyring struct {
	index []string // keys, most specific (reverse-sorted) first
	creds map[string][]credential
}

// add lists the credentials of one secret's docker config. Keys are
// normalized as the kubelet does: the scheme is dropped, a /v1/ or /v2/
// path prefix too, so "https://r.example.com/v1/" is "r.example.com".
// Keys that do not parse as URLs are skipped.
func (k *keyring) add(secret string, cfg dockerConfig) {
	if k.creds == nil {
		k.creds = map[string][]credential{}
	}
	locs := make([]string, 0, len(cfg))
	for loc := range cfg {
		locs = append(locs, loc)
	}
	sort.Strings(locs)
	for _, loc := range locs {
		key, ok := registryKey(loc)
		if !ok {
			continue
		}
		e := cfg[loc]
		if _, seen := k.creds[key]; !seen {
			k.index = append(k.index, key)
		}
		k.creds[key] = append(k.creds[key], credential{key: key, secret: secret, auth: &runtimeapi.AuthConfig{
			Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken, RegistryToken: e.RegistryToken}})
	}
	// reverse order puts a longer key before its prefix
	// ("r.example.com/team" before "r.example.com")
	sort.Sort(sort.Reverse(sort.StringSlice(k.index)))
}

// registryKey normalizes a docker config key: host[:port][/path].
func registryKey(loc string) (string, bool) {
	v := loc
	if !strings.HasPrefix(v, "https://") && !strings.HasPrefix(v, "http://") {
		v = "https://" + v
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return "", false
	}
	p := u.Path
	if strings.HasPrefix(p, "/v2/") || strings.HasPrefix(p, "/v1/") {
		p = p[3:]
	}
	if p == "" || p == "/" {
		return u.Host, true
	}
	return u.Host + p, true
}

// lookup returns the credentials for an image, best match first: those of
// every key that matches its repository, else Docker Hub's for a Docker
// Hub image. None means pull anonymously.
func (k *keyring) lookup(image string) []credential {
	repo, err := imageRepository(image)
	if err != nil {
		return nil
	}
	var out []credential
	for _, key := range k.index {
		if registryKeyMatches(key, repo) {
			out = append(out, k.creds[key]...)
		}
	}
	if len(out) == 0 && isDefaultRegistry(repo) {
		out = k.creds[defaultRegistryHost]
	}
	return out
}

// registryKeyMatches says whether a normalized registry key matches a
// repository ("host[:port]/path"), by the kubelet's rules: the ports are
// equal, the hosts have as many dot-separated parts and each part matches
// as a glob ("*.example.com" matches "a.example.com", not "example.com"
// or "a.b.example.com"), and the key's path is a prefix of the
// repository's.
func registryKeyMatches(key, repo string) bool {
	k, err := url.Parse("https://" + key)
	if err != nil {
		return false
	}
	r, err := url.Parse("https://" + repo)
	if err != nil {
		return false
	}
	kParts, kPort := splitHost(k.Host)
	rParts, rPort := splitHost(r.Host)
	if kPort != rPort || len(kParts) != len(rParts) || !strings.HasPrefix(r.Path, k.Path) {
		return false
	}
	for i := range kParts {
		if ok, err := filepath.Match(kParts[i], rParts[i]); err != nil || !ok {
			return false
		}
	}
	return true
}

// splitHost splits "a.b.c:port" into its dot-separated parts and port.
func splitHost(hostport string) ([]string, string) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	return strings.Split(host, "."), port
}

// isDefaultRegistry says whether a normalized repository is on Docker Hub.
func isDefaultRegistry(repo string) bool {
	return strings.HasPrefix(repo, "docker.io/")
}

// imageRepository is an image reference's repository with its registry,
// without tag or digest, normalized as docker's reference package does:
// "busybox" is "docker.io/library/busybox", "r.example.com:5000/a/b:1"
// is "r.example.com:5000/a/b".
func imageRepository(image string) (string, error) {
	name, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	if name == "" || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") || strings.Contains(name, "//") {
		return "", fmt.Errorf("invalid image reference %q", image)
	}
	domain, rest := "docker.io", name
	if i := strings.Index(name, "/"); i >= 0 {
		first := name[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first {
			domain, rest = first, name[i+1:]
		}
	}
	if domain == defaultRegistryHost {
		domain = "docker.io"
	}
	if domain == "docker.io" && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	return domain + "/" + rest, nil
}
