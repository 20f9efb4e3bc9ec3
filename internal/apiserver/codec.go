package apiserver

import (
	"fmt"
	"mime"
	"net/http"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apidiscoveryv2beta1 "k8s.io/api/apidiscovery/v2beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1beta1 "k8s.io/apimachinery/pkg/apis/meta/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// Media types the server speaks.
const (
	mediaJSON     = "application/json"
	mediaYAML     = "application/yaml"
	mediaProtobuf = "application/vnd.kubernetes.protobuf"
)

// codecs holds the serializers for one scheme.
type codecs struct {
	scheme      *runtime.Scheme
	json        *json.Serializer
	jsonStrict  *json.Serializer
	yaml        *json.Serializer
	yamlStrict  *json.Serializer
	protobuf    *protobuf.Serializer
	protobufRaw *protobuf.RawSerializer
}

func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme,
		metav1.AddMetaToScheme,
		metav1beta1.AddMetaToScheme,
		apidiscoveryv2.AddToScheme,
		apidiscoveryv2beta1.AddToScheme,
		metricsv1beta1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("build scheme: %w", err)
		}
	}
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	// kubectl sends DeleteOptions as meta.k8s.io/v1
	s.AddKnownTypes(metav1.SchemeGroupVersion, &metav1.DeleteOptions{}, &metav1.ListOptions{},
		&metav1.GetOptions{}, &metav1.CreateOptions{}, &metav1.UpdateOptions{}, &metav1.PatchOptions{})
	return s, nil
}

func newCodecs(s *runtime.Scheme) *codecs {
	return &codecs{
		scheme:      s,
		json:        json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{}),
		jsonStrict:  json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{Strict: true}),
		yaml:        json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{Yaml: true}),
		yamlStrict:  json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{Yaml: true, Strict: true}),
		protobuf:    protobuf.NewSerializer(s, s),
		protobufRaw: protobuf.NewRawSerializer(s, s),
	}
}

// encoder picks the response encoding from an Accept header.
type encoder struct {
	media string
	enc   runtime.Encoder
	// as is the requested conversion (Table, PartialObjectMetadata,
	// PartialObjectMetadataList, APIGroupDiscoveryList), "" for none.
	as      string
	asGroup string
	asVer   string
}

// acceptItem is one parsed entry of an Accept header.
type acceptItem struct {
	media  string
	params map[string]string
}

func parseAccept(h string) []acceptItem {
	if h == "" {
		return []acceptItem{{media: "*/*"}}
	}
	var out []acceptItem
	for _, part := range strings.Split(h, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		out = append(out, acceptItem{media: mt, params: params})
	}
	return out
}

// negotiate chooses the response encoding. allowedAs lists the conversions
// the endpoint supports (e.g. "Table"); an Accept entry asking for another
// conversion is skipped, as upstream does.
func (c *codecs) negotiate(r *http.Request, allowedAs ...string) (encoder, bool) {
	for _, item := range parseAccept(r.Header.Get("Accept")) {
		as := item.params["as"]
		if as != "" {
			ok := false
			for _, a := range allowedAs {
				if a == as {
					ok = true
				}
			}
			if !ok {
				continue
			}
		}
		e := encoder{as: as, asGroup: item.params["g"], asVer: item.params["v"]}
		switch item.media {
		case mediaJSON, "*/*", "application/*", "application/json-patch+json", "application/merge-patch+json":
			e.media, e.enc = mediaJSON, c.json
		case mediaYAML:
			e.media, e.enc = mediaYAML, c.yaml
		case mediaProtobuf:
			if as == "APIGroupDiscoveryList" {
				// discovery protobuf is served too
				e.media, e.enc = mediaProtobuf, c.protobuf
				return e, true
			}
			e.media, e.enc = mediaProtobuf, c.protobuf
		default:
			continue
		}
		return e, true
	}
	return encoder{}, false
}

// decoderFor returns the decoder for a request body's Content-Type, and
// whether it decodes strictly.
func (c *codecs) decoderFor(contentType string, strict bool) (runtime.Decoder, string, error) {
	mt := mediaJSON
	if contentType != "" {
		m, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, "", fmt.Errorf("invalid Content-Type %q: %w", contentType, err)
		}
		mt = m
	}
	switch mt {
	case mediaJSON:
		if strict {
			return c.jsonStrict, mt, nil
		}
		return c.json, mt, nil
	case mediaYAML:
		if strict {
			return c.yamlStrict, mt, nil
		}
		return c.yaml, mt, nil
	case mediaProtobuf:
		return c.protobuf, mt, nil
	}
	return nil, mt, fmt.Errorf("unsupported media type %q", mt)
}
