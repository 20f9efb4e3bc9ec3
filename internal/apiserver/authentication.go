package apiserver

import (
	"errors"
	"net/http"
	"slices"

	authenticationv1 "k8s.io/api/authentication/v1"
	authenticationv1beta1 "k8s.io/api/authentication/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
	"github.com/skiff-sh/skiff/internal/satoken"
)

// authenticationGroups are authentication.k8s.io's versions: create-only
// resources that answer from the request and are never stored.
// tokenreviews (v1) authenticates a token for another component;
// selfsubjectreviews (v1, and v1beta1 for kubectl 1.27) says who the
// caller is (`kubectl auth whoami`).
func authenticationGroups() []groupVersion {
	v1, v1beta1 := authenticationv1.SchemeGroupVersion, authenticationv1beta1.SchemeGroupVersion
	create := []string{"create"}
	return []groupVersion{
		{gv: v1, resources: []*registry.Resource{
			{GVK: v1.WithKind("SelfSubjectReview"), Plural: "selfsubjectreviews", Verbs: create, Strategy: registry.Base{},
				New: func() runtime.Object { return &authenticationv1.SelfSubjectReview{} }},
			{GVK: v1.WithKind("TokenReview"), Plural: "tokenreviews", Verbs: create, Strategy: registry.Base{},
				New: func() runtime.Object { return &authenticationv1.TokenReview{} }},
		}},
		{gv: v1beta1, resources: []*registry.Resource{
			{GVK: v1beta1.WithKind("SelfSubjectReview"), Plural: "selfsubjectreviews", Verbs: create, Strategy: registry.Base{},
				New: func() runtime.Object { return &authenticationv1beta1.SelfSubjectReview{} }},
		}},
	}
}

// userInfo is the API form of an authenticated user.
func (u user) userInfo() authenticationv1.UserInfo {
	ui := authenticationv1.UserInfo{Username: u.name, UID: u.uid, Groups: slices.Clone(u.groups)}
	if len(u.extra) > 0 {
		ui.Extra = map[string]authenticationv1.ExtraValue{}
		for k, v := range u.extra {
			ui.Extra[k] = slices.Clone(v)
		}
	}
	return ui
}

// serveAuthentication serves authentication.k8s.io.
func (s *Server) serveAuthentication(w http.ResponseWriter, r *http.Request, ri requestInfo) {
	gr := schema.GroupResource{Group: authenticationv1.GroupName, Resource: ri.resource}
	known := (ri.version == "v1" && (ri.resource == "tokenreviews" || ri.resource == "selfsubjectreviews")) ||
		(ri.version == "v1beta1" && ri.resource == "selfsubjectreviews")
	if !known || ri.namespace != "" || ri.name != "" || ri.subresource != "" {
		s.writeError(w, r, apierrors.NewNotFound(gr, ri.name))
		return
	}
	if ri.verb != "create" {
		s.writeError(w, r, apierrors.NewMethodNotSupported(gr, ri.verb))
		return
	}
	body, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	caller, _ := r.Context().Value(userKey).(user)
	ct := r.Header.Get("Content-Type")
	switch {
	case ri.resource == "selfsubjectreviews" && ri.version == "v1":
		if _, _, err := s.decodeObject(body, ct, "", &authenticationv1.SelfSubjectReview{}, authenticationv1.SchemeGroupVersion.WithKind("SelfSubjectReview")); err != nil {
			s.writeError(w, r, err)
			return
		}
		out := &authenticationv1.SelfSubjectReview{TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "SelfSubjectReview"},
			ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.Now()},
			Status:     authenticationv1.SelfSubjectReviewStatus{UserInfo: caller.userInfo()}}
		s.writeObject(w, r, http.StatusCreated, out)
	case ri.resource == "selfsubjectreviews":
		if _, _, err := s.decodeObject(body, ct, "", &authenticationv1beta1.SelfSubjectReview{}, authenticationv1beta1.SchemeGroupVersion.WithKind("SelfSubjectReview")); err != nil {
			s.writeError(w, r, err)
			return
		}
		out := &authenticationv1beta1.SelfSubjectReview{TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1beta1", Kind: "SelfSubjectReview"},
			ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.Now()},
			Status:     authenticationv1beta1.SelfSubjectReviewStatus{UserInfo: caller.userInfo()}}
		s.writeObject(w, r, http.StatusCreated, out)
	default:
		obj, _, err := s.decodeObject(body, ct, "", &authenticationv1.TokenReview{}, authenticationv1.SchemeGroupVersion.WithKind("TokenReview"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		tr := obj.(*authenticationv1.TokenReview)
		if tr.Spec.Token == "" {
			s.writeError(w, r, apierrors.NewBadRequest("token is required"))
			return
		}
		out := tr.DeepCopy()
		out.ObjectMeta = metav1.ObjectMeta{CreationTimestamp: metav1.Now()}
		out.Status = s.reviewToken(r, tr.Spec)
		s.writeObject(w, r, http.StatusCreated, out)
	}
}

// reviewToken authenticates a TokenReview's token. A service-account
// token must carry one of the requested audiences (the API server's own
// when none are requested); status.audiences is those it carries. Other
// tokens only pass a review that names no audiences.
func (s *Server) reviewToken(r *http.Request, spec authenticationv1.TokenReviewSpec) authenticationv1.TokenReviewStatus {
	var u user
	var err error
	var auds []string
	switch {
	case satoken.LooksLikeJWT(spec.Token) && s.tokens != nil:
		want := spec.Audiences
		if len(want) == 0 {
			want = s.tokens.audiences
		}
		var c *satoken.Claims
		u, c, err = s.authenticateServiceAccountFor(r.Context(), spec.Token, want)
		if err == nil {
			for _, a := range c.Audience {
				if slices.Contains(want, a) {
					auds = append(auds, a)
				}
			}
		}
	case len(spec.Audiences) > 0:
		err = errors.New("token does not carry the requested audiences")
	default:
		u, err = s.authenticateBearer(r.Context(), spec.Token)
	}
	if err != nil {
		return authenticationv1.TokenReviewStatus{Error: "[invalid bearer token, " + err.Error() + "]"}
	}
	return authenticationv1.TokenReviewStatus{Authenticated: true, User: u.userInfo(), Audiences: auds}
}
