package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// TestBadInput sends malformed, invalid and unauthenticated requests, with
// the newest kubectl and raw HTTPS, and checks the status and that nothing
// was stored.
func TestBadInput(t *testing.T) {
	s := env.StartServer(t, framework.ServerOptions{})
	k := framework.LatestKubectl(t)
	cs := s.Clientset(t)
	hc := s.HTTPClient(t)
	const ns = "bad-input"
	if _, err := cs.CoreV1().Namespaces().Create(ctxT(t, time.Minute), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cmPath := "/api/v1/namespaces/" + ns + "/configmaps"

	// assertNotStored fails if the configmap exists.
	assertNotStored := func(t *testing.T, name string) {
		t.Helper()
		_, err := cs.CoreV1().ConfigMaps(ns).Get(ctxT(t, time.Minute), name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("configmap %q: err %v, want NotFound (it must not be stored)", name, err)
		}
	}
	// status decodes a Status body and checks code and reason.
	status := func(t *testing.T, r rawResponse, code int, reason metav1.StatusReason) metav1.Status {
		t.Helper()
		if r.code != code {
			t.Fatalf("status %d, want %d; body %s", r.code, code, r.body)
		}
		var st metav1.Status
		if err := json.Unmarshal(r.body, &st); err != nil || st.Kind != "Status" {
			t.Fatalf("body is not a Status (%v): %s", err, r.body)
		}
		if st.Code != int32(code) || st.Status != metav1.StatusFailure || (reason != "" && st.Reason != reason) {
			t.Errorf("Status code %d status %q reason %q, want %d Failure %q", st.Code, st.Status, st.Reason, code, reason)
		}
		return st
	}

	t.Run("malformed-json", func(t *testing.T) {
		r := do(t, hc, s, "POST", cmPath, "application/json", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"malformed-json"`))
		status(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest)
		assertNotStored(t, "malformed-json")
	})
	t.Run("malformed-yaml", func(t *testing.T) {
		r := do(t, hc, s, "POST", cmPath, "application/yaml", []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: malformed-yaml\n data: [unclosed\n"))
		if r.code != http.StatusBadRequest {
			t.Errorf("status %d, want 400: %s", r.code, r.body)
		}
		assertNotStored(t, "malformed-yaml")
		res := s.Kubectl(k, "create", "-f", testdata("malformed.yaml"), "-n", ns)
		if res.ExitCode == 0 || !strings.Contains(res.Stderr, "error") {
			t.Errorf("kubectl create of malformed YAML: %s", res)
		}
		assertNotStored(t, "malformed")
	})
	t.Run("unknown-field-strict", func(t *testing.T) {
		res := s.Kubectl(k, "create", "--validate=strict", "-f", testdata("unknown-field.yaml"), "-n", ns)
		if res.ExitCode == 0 {
			t.Errorf("kubectl create --validate=strict with an unknown field succeeded: %s", res)
		}
		mustContain(t, "kubectl --validate=strict", res.Stderr, "dataa")
		assertNotStored(t, "unknown-field")
		r := do(t, hc, s, "POST", cmPath+"?fieldValidation=Strict", "application/json",
			[]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"unknown-field"},"dataa":{"k":"v"}}`))
		st := status(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest)
		mustContain(t, "strict field validation", st.Message, `unknown field "dataa"`)
		assertNotStored(t, "unknown-field")
		// without strict validation the field is dropped, with a warning
		r = do(t, hc, s, "POST", cmPath+"?fieldValidation=Warn", "application/json",
			[]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"unknown-field-warn"},"dataa":{"k":"v"}}`))
		if r.code != http.StatusCreated {
			t.Errorf("fieldValidation=Warn: status %d, want 201: %s", r.code, r.body)
		}
	})
	t.Run("invalid-name", func(t *testing.T) {
		r := do(t, hc, s, "POST", cmPath, "application/json", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Foo_Bar"}}`))
		st := status(t, r, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid)
		mustContain(t, "invalid name", st.Message, `metadata.name: Invalid value: "Foo_Bar"`)
		if st.Details == nil || st.Details.Name != "Foo_Bar" || st.Details.Kind != "ConfigMap" || len(st.Details.Causes) == 0 ||
			st.Details.Causes[0].Field != "metadata.name" || st.Details.Causes[0].Type != metav1.CauseTypeFieldValueInvalid {
			t.Errorf("invalid name: details %+v", st.Details)
		}
		res := s.KubectlWith(k, framework.Cmd{Stdin: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Foo_Bar\n"}, "create", "-f", "-", "-n", ns)
		if res.ExitCode == 0 {
			t.Errorf("kubectl create of configmap Foo_Bar succeeded")
		}
		mustContain(t, "kubectl invalid name", res.Stderr, `The ConfigMap "Foo_Bar" is invalid: metadata.name: Invalid value: "Foo_Bar"`)
		if l, err := cs.CoreV1().ConfigMaps(ns).List(ctxT(t, time.Minute), metav1.ListOptions{}); err != nil {
			t.Error(err)
		} else {
			for _, cm := range l.Items {
				if strings.EqualFold(cm.Name, "foo_bar") {
					t.Errorf("invalid configmap stored: %s", cm.Name)
				}
			}
		}
	})
	t.Run("negative-replicas", func(t *testing.T) {
		res := s.Kubectl(k, "create", "-f", testdata("negative-replicas.yaml"), "-n", ns)
		if res.ExitCode == 0 {
			t.Errorf("a Deployment with replicas -1 was accepted")
		}
		mustContain(t, "kubectl negative replicas", res.Stderr,
			`The Deployment "x" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0`)
		if _, err := cs.AppsV1().Deployments(ns).Get(ctxT(t, time.Minute), "x", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("deployment x: err %v, want NotFound", err)
		}
	})
	t.Run("wrong-kind", func(t *testing.T) {
		r := do(t, hc, s, "POST", cmPath, "application/json",
			[]byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"wrong-kind"},"stringData":{"a":"b"}}`))
		status(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest)
		assertNotStored(t, "wrong-kind")
		if _, err := cs.CoreV1().Secrets(ns).Get(ctxT(t, time.Minute), "wrong-kind", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("secret wrong-kind: err %v, want NotFound", err)
		}
		// a wrong group version for the endpoint
		r = do(t, hc, s, "POST", "/apis/apps/v1/namespaces/"+ns+"/deployments", "application/json",
			[]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"wrong-kind"}}`))
		status(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest)
		// a name in the body that differs from the URL
		r = do(t, hc, s, "PUT", cmPath+"/one-name", "application/json",
			[]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other-name"}}`))
		if r.code != http.StatusBadRequest {
			t.Errorf("PUT with a mismatched name: status %d, want 400: %s", r.code, r.body)
		}
		assertNotStored(t, "other-name")
		assertNotStored(t, "one-name")
	})
	t.Run("oversized-body", func(t *testing.T) {
		body, err := json.Marshal(corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: "oversized"},
			Data:       map[string]string{"big": strings.Repeat("x", 3<<20+512<<10)}})
		if err != nil {
			t.Fatal(err)
		}
		r := do(t, hc, s, "POST", cmPath, "application/json", body)
		if r.code != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d, want 413: %.300s", r.code, r.body)
		}
		assertNotStored(t, "oversized")
	})
	t.Run("stale-resource-version", func(t *testing.T) {
		ctx := ctxT(t, time.Minute)
		cm, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cas"}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		stale := cm.DeepCopy()
		cm.Data["v"] = "2"
		cm2, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cm2.ResourceVersion == stale.ResourceVersion {
			t.Errorf("update kept resourceVersion %s", cm2.ResourceVersion)
		}
		stale.Data["v"] = "stale"
		body, _ := json.Marshal(stale)
		r := do(t, hc, s, "PUT", cmPath+"/cas", "application/json", body)
		st := status(t, r, http.StatusConflict, metav1.StatusReasonConflict)
		mustContain(t, "conflict", st.Message, "the object has been modified")
		_, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, stale, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			t.Errorf("client-go update with a stale resourceVersion: %v, want Conflict", err)
		}
		got, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "cas", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Data["v"] != "2" || got.ResourceVersion != cm2.ResourceVersion {
			t.Errorf("after refused updates: data %v rv %s, want v=2 rv %s", got.Data, got.ResourceVersion, cm2.ResourceVersion)
		}
	})
	t.Run("no-credentials", func(t *testing.T) {
		noCreds := anonymousClient(t, s)
		for _, p := range []string{"/api/v1/namespaces", cmPath, "/apis"} {
			r := do(t, noCreds, s, "GET", p, "", nil)
			if r.code != http.StatusUnauthorized {
				t.Errorf("GET %s without credentials: status %d, want 401: %s", p, r.code, r.body)
			}
		}
		r := do(t, noCreds, s, "POST", cmPath, "application/json", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"anon"}}`))
		if r.code != http.StatusUnauthorized {
			t.Errorf("anonymous create: status %d, want 401", r.code)
		}
		assertNotStored(t, "anon")
	})
	t.Run("bearer-token", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res := s.Skiff(ctx, "token", "create", "--kubeconfig", s.Kubeconfig(), "--ttl", "1h", "--description", "e2e")
		if res.ExitCode != 0 {
			t.Fatalf("skiff token create: %s", res)
		}
		token := strings.TrimSpace(res.Stdout)
		if !regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`).MatchString(token) {
			t.Fatalf("skiff token create printed %q, want a token like abcdef.0123456789abcdef", res.Stdout)
		}
		good := tokenKubeconfig(t, s, token)
		out := s.MustKubectl(t, k, "--kubeconfig", good, "get", "namespace", ns, "-o", "name")
		sameLines(t, "kubectl with the token", out, "namespace/"+ns)
		out = s.MustKubectl(t, k, "--kubeconfig", good, "create", "configmap", "by-token", "-n", ns)
		sameLines(t, "create with the token", out, "configmap/by-token created")

		wrong := tokenKubeconfig(t, s, token[:7]+strings.Repeat("0", 16))
		r := s.Kubectl(k, "--kubeconfig", wrong, "get", "namespaces")
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "Unauthorized") {
			t.Errorf("kubectl with a wrong token: %s", r)
		}
		for _, tok := range []string{token[:7] + strings.Repeat("0", 16), "zzzzzz.0123456789abcdef", "not-a-token"} {
			req, _ := http.NewRequestWithContext(ctx, "GET", s.URL()+"/api/v1/namespaces", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := anonymousClient(t, s).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("bearer %q: status %d, want 401", tok, resp.StatusCode)
			}
		}
	})
	t.Run("metrics", func(t *testing.T) {
		r := do(t, hc, s, "GET", "/metrics", "", nil)
		if r.code != http.StatusOK {
			t.Fatalf("/metrics: status %d", r.code)
		}
		mustContain(t, "/metrics", string(r.body), "# TYPE apiserver_request_total counter", `code="422"`, `code="409"`)
	})
}

// anonymousClient trusts the cluster CA but presents no credentials.
func anonymousClient(t *testing.T, s *framework.Server) *http.Client {
	t.Helper()
	cfg := s.RestConfig(t)
	pool := x509.NewCertPool()
	ca := cfg.CAData
	if len(ca) == 0 {
		b, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		ca = b
	}
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no CA in the admin kubeconfig")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// tokenKubeconfig writes a kubeconfig that authenticates with token only.
func tokenKubeconfig(t *testing.T, s *framework.Server, token string) string {
	t.Helper()
	admin, err := clientcmd.LoadFromFile(s.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := admin.Contexts[admin.CurrentContext]
	if ctx == nil {
		t.Fatalf("admin kubeconfig has no current context %q", admin.CurrentContext)
	}
	cluster := admin.Clusters[ctx.Cluster]
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["skiff"] = cluster
	cfg.AuthInfos["token"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["token"] = &clientcmdapi.Context{Cluster: "skiff", AuthInfo: "token"}
	cfg.CurrentContext = "token"
	p := filepath.Join(t.TempDir(), "token.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	return p
}
