package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// CRDSource is a file of CRDs inside a Go module. The CRDs are read from the
// module cache, so they are exactly the upstream release's and the main
// go.mod does not have to require these modules.
type CRDSource struct {
	Module, Version, File string
	// Names are the CRDs to install from the file.
	Names []string
}

// CRDSources are the upstream CRDs the worker touches: cert-manager's
// Certificate and issuers, the CertificateRequests, Orders and Challenges
// it reads the CA's reason from, Istio's Gateway and VirtualService. Only
// these are installed: Istio's file holds 15, and each costs start-up
// time. k8s/kubetest installs the same list.
func CRDSources() []CRDSource {
	const certManager, certManagerVersion = "github.com/cert-manager/cert-manager", "v1.21.2"
	return []CRDSource{
		{
			Module: certManager, Version: certManagerVersion,
			File:  "deploy/crds/cert-manager.io_certificates.yaml",
			Names: []string{"certificates.cert-manager.io"},
		},
		{Module: certManager, Version: certManagerVersion, File: "deploy/crds/cert-manager.io_certificaterequests.yaml", Names: []string{"certificaterequests.cert-manager.io"}},
		{Module: certManager, Version: certManagerVersion, File: "deploy/crds/acme.cert-manager.io_orders.yaml", Names: []string{"orders.acme.cert-manager.io"}},
		{Module: certManager, Version: certManagerVersion, File: "deploy/crds/acme.cert-manager.io_challenges.yaml", Names: []string{"challenges.acme.cert-manager.io"}},
		{
			Module: "github.com/cert-manager/cert-manager", Version: "v1.21.2",
			File:  "deploy/crds/cert-manager.io_issuers.yaml",
			Names: []string{"issuers.cert-manager.io"},
		},
		{
			Module: "github.com/cert-manager/cert-manager", Version: "v1.21.2",
			File:  "deploy/crds/cert-manager.io_clusterissuers.yaml",
			Names: []string{"clusterissuers.cert-manager.io"},
		},
		{
			Module: "istio.io/api", Version: "v1.32.0",
			File:  "kubernetes/customresourcedefinitions.gen.yaml",
			Names: []string{"gateways.networking.istio.io", "virtualservices.networking.istio.io"},
		},
	}
}

// LoadCRDs reads the CRDs of sources from the module cache, downloading a
// module the first time (the module proxy must be reachable once).
func LoadCRDs(ctx context.Context, sources []CRDSource) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	dirs := map[string]string{}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, src := range sources {
		key := src.Module + "@" + src.Version
		if dirs[key] == "" {
			dir, err := ModuleDir(ctx, src.Module, src.Version)
			if err != nil {
				return nil, err
			}
			dirs[key] = dir
		}
		found, err := ReadCRDFile(filepath.Join(dirs[key], src.File), src.Names)
		if err != nil {
			return nil, err
		}
		out = append(out, found...)
	}
	return out, nil
}

// ModuleDir asks the go command where module@version is, downloading it
// into the module cache if needed (offline once cached). It runs in an
// empty temporary directory so no go.mod is consulted or changed.
func ModuleDir(ctx context.Context, module, version string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	tmp, err := os.MkdirTemp("", "localapi-moddl-")
	if err != nil {
		return "", fmt.Errorf("create temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, goBin, "mod", "download", "-json", module+"@"+version)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil && runErr == nil {
		return "", fmt.Errorf("go mod download %s@%s: parse output: %w", module, version, err)
	}
	if runErr != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s (needed for its CRDs; the go command and the module proxy must be reachable once): %v %s %s",
			module, version, runErr, info.Error, bytes.TrimSpace(stderr.Bytes()))
	}
	return info.Dir, nil
}

// ReadCRDFile decodes the multi-document YAML at path and returns the CRDs
// named in want, failing if any is missing (an upstream rename must not
// turn into a silently absent resource).
func ReadCRDFile(path string, want []string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read CRDs: %w", err)
	}
	defer f.Close()
	wanted := map[string]bool{}
	for _, n := range want {
		wanted[n] = true
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 64<<10)
	var out []*apiextensionsv1.CustomResourceDefinition
	for {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		err := dec.Decode(crd)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("decode CRDs in %s: %w", path, err)
		}
		if wanted[crd.Name] {
			out = append(out, crd)
			delete(wanted, crd.Name)
		}
	}
	if len(wanted) > 0 {
		return nil, fmt.Errorf("%s lacks CRDs %v", path, want)
	}
	return out, nil
}
