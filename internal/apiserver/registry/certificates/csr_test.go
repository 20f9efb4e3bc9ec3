package certificates

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"reflect"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

func requestPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes"}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func certPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func ptr[T any](v T) *T { return &v }

func fieldsOf(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field+":"+string(e.Type))
	}
	return out
}

func TestValidateCreate(t *testing.T) {
	req := requestPEM(t)
	valid := func() *certificatesv1.CertificateSigningRequest {
		return &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "csr-1"},
			Spec: certificatesv1.CertificateSigningRequestSpec{
				Request:    req,
				SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName,
				Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
			},
		}
	}
	tests := []struct {
		name   string
		modify func(*certificatesv1.CertificateSigningRequest)
		want   []string
	}{
		{"valid", func(*certificatesv1.CertificateSigningRequest) {}, nil},
		{"custom signer with path", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.SignerName = "example.com/my.signer" }, nil},
		{"no request", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.Request = nil }, []string{"spec.request:FieldValueInvalid"}},
		{"certificate instead of request", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.Request = certPEM(t) }, []string{"spec.request:FieldValueInvalid"}},
		{"garbage request", func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Request = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("nope")})
		}, []string{"spec.request:FieldValueInvalid"}},
		{"no usages", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.Usages = nil }, []string{"spec.usages:FieldValueRequired"}},
		{"unknown usage", func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Usages = append(c.Spec.Usages, "teleport")
		}, []string{"spec.usages[2]:FieldValueNotSupported"}},
		{"duplicate usage", func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Usages = append(c.Spec.Usages, certificatesv1.UsageClientAuth)
		}, []string{"spec.usages[2]:FieldValueDuplicate"}},
		{"no signer", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.SignerName = "" }, []string{"spec.signerName:FieldValueRequired"}},
		{"signer without path", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.SignerName = "example.com" }, []string{"spec.signerName:FieldValueInvalid"}},
		{"signer with two slashes", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.SignerName = "example.com/a/b" }, []string{"spec.signerName:FieldValueInvalid"}},
		{"signer domain one label", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.SignerName = "example/a" }, []string{"spec.signerName:FieldValueInvalid"}},
		{"signer bad label", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.SignerName = "Example.com/a" }, []string{"spec.signerName:FieldValueInvalid"}},
		{"legacy signer", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.SignerName = "kubernetes.io/legacy-unknown" }, []string{"spec.signerName:FieldValueInvalid"}},
		{"short expiration", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.ExpirationSeconds = ptr(int32(599)) }, []string{"spec.expirationSeconds:FieldValueInvalid"}},
		{"ten minutes", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.ExpirationSeconds = ptr(int32(600)) }, nil},
	}
	s := Resources()[0].Strategy
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := valid()
			tt.modify(csr)
			s.PrepareForCreate(csr)
			if got := fieldsOf(s.ValidateCreate(csr)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCreateRecordsRequesterAndClearsStatus(t *testing.T) {
	s := Resources()[0].Strategy
	csr := &certificatesv1.CertificateSigningRequest{
		Spec:   certificatesv1.CertificateSigningRequestSpec{Username: "forged", Groups: []string{"system:masters"}},
		Status: certificatesv1.CertificateSigningRequestStatus{Certificate: []byte("x"), Conditions: []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved}}},
	}
	s.PrepareForCreate(csr)
	s.(registry.RequesterStrategy).SetRequester(csr, registry.UserInfo{Name: "system:bootstrap:abcdef", UID: "u-1",
		Groups: []string{"system:bootstrappers", "system:authenticated"}, Extra: map[string][]string{"k": {"v"}}})
	if csr.Spec.Username != "system:bootstrap:abcdef" || !reflect.DeepEqual(csr.Spec.Groups, []string{"system:bootstrappers", "system:authenticated"}) ||
		csr.Spec.UID != "u-1" || !reflect.DeepEqual(csr.Spec.Extra, map[string]certificatesv1.ExtraValue{"k": {"v"}}) {
		t.Errorf("requester %q %q %v %v", csr.Spec.Username, csr.Spec.UID, csr.Spec.Groups, csr.Spec.Extra)
	}
	if len(csr.Status.Certificate) != 0 || len(csr.Status.Conditions) != 0 {
		t.Errorf("status not cleared: %+v", csr.Status)
	}
}

func TestUpdates(t *testing.T) {
	req := requestPEM(t)
	cert := certPEM(t)
	// stored conditions carry times (the server stamps them)
	stamp := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	approved := certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "KubectlApprove",
		LastUpdateTime: stamp, LastTransitionTime: stamp}
	denied := certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue}
	failed := certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue}
	base := func(conds []certificatesv1.CertificateSigningRequestCondition, cert []byte) *certificatesv1.CertificateSigningRequest {
		return &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "csr-1"},
			Spec: certificatesv1.CertificateSigningRequestSpec{Request: req, SignerName: "example.com/s",
				Usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth}, Username: "alice"},
			Status: certificatesv1.CertificateSigningRequestStatus{Conditions: conds, Certificate: cert},
		}
	}
	type cs = []certificatesv1.CertificateSigningRequestCondition
	tests := []struct {
		name     string
		sub      string // "", "status" or "approval"
		old, obj *certificatesv1.CertificateSigningRequest
		want     []string
		// check inspects the object after PrepareFor*.
		check func(t *testing.T, got *certificatesv1.CertificateSigningRequest)
	}{
		{name: "approve", sub: Approval, old: base(nil, nil), obj: base(cs{approved}, nil)},
		{name: "deny", sub: Approval, old: base(nil, nil), obj: base(cs{denied}, nil)},
		{name: "approve and deny", sub: Approval, old: base(nil, nil), obj: base(cs{approved, denied}, nil),
			want: []string{"status.conditions[1].type:FieldValueInvalid"}},
		{name: "approval status False", sub: Approval, old: base(nil, nil),
			obj:  base(cs{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionFalse}}, nil),
			want: []string{"status.conditions[0].status:FieldValueNotSupported"}},
		{name: "approval defaults status True", sub: Approval, old: base(nil, nil),
			obj: base(cs{{Type: certificatesv1.CertificateApproved}}, nil),
			check: func(t *testing.T, got *certificatesv1.CertificateSigningRequest) {
				if c := got.Status.Conditions[0]; c.Status != corev1.ConditionTrue || c.LastUpdateTime.IsZero() || c.LastTransitionTime.IsZero() {
					t.Errorf("condition %+v", c)
				}
			}},
		{name: "un-approve", sub: Approval, old: base(cs{approved}, nil), obj: base(nil, nil),
			want: []string{"status.conditions:FieldValueForbidden"}},
		{name: "approval keeps certificate and Failed", sub: Approval, old: base(cs{failed}, cert), obj: base(cs{approved}, nil),
			check: func(t *testing.T, got *certificatesv1.CertificateSigningRequest) {
				if string(got.Status.Certificate) != string(cert) {
					t.Error("certificate dropped")
				}
			},
			want: []string{"status.conditions:FieldValueForbidden"}}, // Failed removed: refused
		{name: "status sets certificate", sub: "status", old: base(cs{approved}, nil), obj: base(cs{approved}, cert)},
		{name: "status replaces certificate", sub: "status", old: base(cs{approved}, cert), obj: base(cs{approved}, certPEM(t)),
			want: []string{"status.certificate:FieldValueForbidden"}},
		{name: "status sets garbage certificate", sub: "status", old: base(cs{approved}, nil), obj: base(cs{approved}, []byte("junk")),
			want: []string{"status.certificate:FieldValueInvalid"}},
		{name: "status may not approve", sub: "status", old: base(nil, nil), obj: base(cs{approved}, nil),
			want: []string{"status.conditions:FieldValueForbidden"}},
		{name: "status keeps approval as it was", sub: "status", old: base(cs{approved}, nil),
			obj: base(cs{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Changed"}, failed}, nil),
			check: func(t *testing.T, got *certificatesv1.CertificateSigningRequest) {
				if got.Status.Conditions[0].Reason != "KubectlApprove" {
					t.Errorf("approval changed through status: %+v", got.Status.Conditions[0])
				}
			}},
		{name: "update keeps spec and status", sub: "", old: base(cs{approved}, nil), obj: func() *certificatesv1.CertificateSigningRequest {
			c := base(nil, cert)
			c.Spec.Username = "mallory"
			c.Labels = map[string]string{"a": "b"}
			return c
		}(),
			check: func(t *testing.T, got *certificatesv1.CertificateSigningRequest) {
				if got.Spec.Username != "alice" || len(got.Status.Certificate) != 0 || len(got.Status.Conditions) != 1 || got.Labels["a"] != "b" {
					t.Errorf("got %+v", got)
				}
			}},
	}
	s := Resources()[0].Strategy
	ss := s.(registry.SubresourceStrategy)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := tt.obj.DeepCopy()
			var errs field.ErrorList
			switch tt.sub {
			case "":
				s.PrepareForUpdate(obj, tt.old)
				s.Default(obj)
				errs = s.ValidateUpdate(obj, tt.old)
			case "status":
				ss.PrepareForSubresourceUpdate("status", obj, tt.old)
				s.Default(obj)
				errs = s.ValidateStatusUpdate(obj, tt.old)
			default:
				ss.PrepareForSubresourceUpdate(tt.sub, obj, tt.old)
				s.Default(obj)
				errs = ss.ValidateSubresourceUpdate(tt.sub, obj, tt.old)
			}
			if got := fieldsOf(errs); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors %v, want %v", got, tt.want)
			}
			if tt.check != nil {
				tt.check(t, obj)
			}
		})
	}
}

func TestTable(t *testing.T) {
	r := Resources()[0]
	if r.Plural != "certificatesigningrequests" || r.Namespaced || !r.Status || !reflect.DeepEqual(r.ShortNames, []string{"csr"}) ||
		!reflect.DeepEqual(r.Subresources, []string{"approval"}) || r.GVK.Group != "certificates.k8s.io" || r.GVK.Version != "v1" {
		t.Errorf("resource %+v", r)
	}
	var names []string
	for _, c := range r.Strategy.Columns() {
		names = append(names, c.Name)
	}
	if want := []string{"Name", "Age", "SignerName", "Requestor", "RequestedDuration", "Condition"}; !reflect.DeepEqual(names, want) {
		t.Errorf("columns %v, want %v", names, want)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		conds []certificatesv1.RequestConditionType
		cert  bool
		exp   *int32
		want  []interface{}
	}{
		{"pending", nil, false, nil, []interface{}{"c", "2m", "s.io/x", "alice", "<none>", "Pending"}},
		{"approved issued", []certificatesv1.RequestConditionType{"Approved"}, true, ptr(int32(3600)), []interface{}{"c", "2m", "s.io/x", "alice", "60m", "Approved,Issued"}},
		{"denied", []certificatesv1.RequestConditionType{"Denied"}, false, nil, []interface{}{"c", "2m", "s.io/x", "alice", "<none>", "Denied"}},
		{"approved failed", []certificatesv1.RequestConditionType{"Approved", "Failed"}, false, nil, []interface{}{"c", "2m", "s.io/x", "alice", "<none>", "Approved,Failed"}},
	}
	for _, tt := range tests {
		csr := &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: "c", CreationTimestamp: metav1.NewTime(now.Add(-2 * time.Minute))},
			Spec: certificatesv1.CertificateSigningRequestSpec{SignerName: "s.io/x", Username: "alice", ExpirationSeconds: tt.exp}}
		for _, c := range tt.conds {
			csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{Type: c, Status: corev1.ConditionTrue})
		}
		if tt.cert {
			csr.Status.Certificate = []byte("x")
		}
		if got := r.Strategy.Row(csr, now); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: row %v, want %v", tt.name, got, tt.want)
		}
	}
	if f := r.Strategy.Fields(&certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{SignerName: "a.b/c"}}); f["spec.signerName"] != "a.b/c" {
		t.Errorf("fields %v", f)
	}
}
