package pki

import (
	"errors"
	"fmt"
	"net/url"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeconfigName is the cluster and context name in kubeconfigs written here.
const KubeconfigName = "skiff"

// tokenUser is the user entry name in a bearer-token kubeconfig.
const tokenUser = "skiff-token"

// WriteKubeconfig writes a kubeconfig to path (mode 0600, atomically) with
// cluster and context "skiff" pointing at server, trusting caPEM, and a user
// entry named user that authenticates with the client certificate certPEM and
// key keyPEM. All data is embedded.
func WriteKubeconfig(path, server string, caPEM, certPEM, keyPEM []byte, user string) error {
	if user == "" {
		return errors.New("write kubeconfig: empty user name")
	}
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return errors.New("write kubeconfig: missing client certificate or key")
	}
	return writeKubeconfig(path, server, caPEM, user, &clientcmdapi.AuthInfo{
		ClientCertificateData: certPEM,
		ClientKeyData:         keyPEM,
	})
}

// WriteTokenKubeconfig writes a kubeconfig like WriteKubeconfig whose user
// authenticates with a bearer token instead of a client certificate.
func WriteTokenKubeconfig(path, server string, caPEM []byte, token string) error {
	if token == "" {
		return errors.New("write kubeconfig: empty token")
	}
	return writeKubeconfig(path, server, caPEM, tokenUser, &clientcmdapi.AuthInfo{Token: token})
}

func writeKubeconfig(path, server string, caPEM []byte, user string, auth *clientcmdapi.AuthInfo) error {
	u, err := url.Parse(server)
	if err != nil {
		return fmt.Errorf("write kubeconfig: server %q: %w", server, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("write kubeconfig: server %q is not an https:// URL", server)
	}
	if len(caPEM) == 0 {
		return errors.New("write kubeconfig: missing CA certificate")
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[KubeconfigName] = &clientcmdapi.Cluster{
		Server:                   server,
		CertificateAuthorityData: caPEM,
	}
	cfg.AuthInfos[user] = auth
	cfg.Contexts[KubeconfigName] = &clientcmdapi.Context{
		Cluster:  KubeconfigName,
		AuthInfo: user,
	}
	cfg.CurrentContext = KubeconfigName
	// clientcmd.Write serializes exactly as clientcmd.WriteToFile does;
	// writing the bytes ourselves makes the replacement atomic.
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("write kubeconfig: encode: %w", err)
	}
	if err := writeFileAtomic(path, data, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}
