// Command kubevalidate decodes Kubernetes manifests strictly into the API types of k8s.io/api.
//
// It reads a multi-document YAML stream (the output of `kustomize build`) on stdin and prints one JSON line per
// document: "ok", "invalid" (unknown or duplicate fields, wrong types: what `kubectl apply --validate=strict`
// refuses) or "unregistered" (a kind that is not built in, such as a CRD's, which the caller checks against the
// CRD's own schema). It exits 1 when any document is invalid.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

type result struct {
	Index      int    `json:"index"`
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	Error      string `json:"error,omitempty"`
}

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

func main() {
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	reader := yaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	out := json.NewEncoder(os.Stdout)
	failed := false
	for index := 0; ; {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "kubevalidate: reading the YAML stream: %v\n", err)
			os.Exit(2)
		}
		if strings.TrimSpace(string(doc)) == "" {
			continue
		}
		res := result{Index: index, Status: "ok"}
		index++
		var head header
		if err := yaml.Unmarshal(doc, &head); err != nil {
			res.Status, res.Error, failed = "invalid", err.Error(), true
		} else {
			res.APIVersion, res.Kind, res.Name = head.APIVersion, head.Kind, head.Metadata.Name
			if _, _, err := decoder.Decode(doc, nil, nil); err != nil {
				if runtime.IsNotRegisteredError(err) {
					res.Status = "unregistered"
				} else {
					res.Status, res.Error, failed = "invalid", err.Error(), true
				}
			}
		}
		if err := out.Encode(res); err != nil {
			fmt.Fprintf(os.Stderr, "kubevalidate: %v\n", err)
			os.Exit(2)
		}
	}
	if failed {
		os.Exit(1)
	}
}
