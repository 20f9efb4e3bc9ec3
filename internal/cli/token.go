package cli

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// tokenChars are the characters of bootstrap tokens ([a-z0-9]).
const tokenChars = "abcdefghijklmnopqrstuvwxyz0123456789"

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	for i := range b {
		b[i] = tokenChars[int(b[i])%len(tokenChars)]
	}
	return string(b), nil
}

func tokenGroup() *group {
	return &group{name: "token", description: "Manage bearer tokens for nodes joining the cluster and for automation.",
		subs:    []subcommand{{name: "create", summary: "create a bootstrap token and print it", run: runTokenCreate}},
		example: `  skiff token create --kubeconfig /var/lib/skiff/admin.kubeconfig --ttl 24h`}
}

func runTokenCreate(ctx context.Context, e *env, args []string) error {
	var kubeconfig, description, groups string
	var ttl time.Duration
	fs := newFlagSet(e, "token create", `
Create a bearer token that the API server accepts, for nodes joining the
cluster and for automation. It prints the token ("abcdef.0123456789abcdef");
use it with 'skiff agent --token' or 'kubectl --token'. The token is stored as
a bootstrap-token Secret in kube-system; delete that Secret to revoke it.`,
		`  skiff token create --kubeconfig /var/lib/skiff/admin.kubeconfig --ttl 24h`)
	fs.StringVar(&kubeconfig, "kubeconfig", "/var/lib/skiff/admin.kubeconfig", "admin kubeconfig of the cluster")
	fs.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid; 0 means it never expires")
	fs.StringVar(&description, "description", "", "what the token is for, stored with it")
	fs.StringVar(&groups, "groups", "system:bootstrappers:skiff:default-node-token", "extra comma-separated groups the token's user belongs to")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("read kubeconfig %s (is the server running and is this its admin kubeconfig?): %w", kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	id, err := randomString(6)
	if err != nil {
		return err
	}
	secret, err := randomString(16)
	if err != nil {
		return err
	}
	data := map[string]string{
		"token-id": id, "token-secret": secret,
		"usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
		"auth-extra-groups": groups,
	}
	if description != "" {
		data["description"] = description
	}
	if ttl > 0 {
		data["expiration"] = time.Now().Add(ttl).UTC().Format(time.RFC3339)
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + id, Namespace: "kube-system"},
		Type:       "bootstrap.kubernetes.io/token",
		StringData: data,
	}
	if _, err := cs.CoreV1().Secrets("kube-system").Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("store the token: %w", err)
	}
	fmt.Fprintf(e.stdout, "%s.%s\n", id, secret)
	return nil
}
