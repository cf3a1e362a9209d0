package kubetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// crdSource is a file of CRDs inside a Go module, read from the module
// cache so the CRDs are exactly the upstream release's and the main go.mod
// does not have to require these modules.
type crdSource struct {
	module, version, file string
	names                 []string // CRDs to install from the file
}

// CRDSources are the upstream CRDs the API server gets. Only the CRDs the
// worker touches are installed: Istio's file holds 15, and each costs
// start-up time.
var crdSources = []crdSource{
	{
		module: "github.com/cert-manager/cert-manager", version: "v1.21.2",
		file:  "deploy/crds/cert-manager.io_certificates.yaml",
		names: []string{"certificates.cert-manager.io"},
	},
	{
		module: "github.com/cert-manager/cert-manager", version: "v1.21.2",
		file:  "deploy/crds/cert-manager.io_issuers.yaml",
		names: []string{"issuers.cert-manager.io"},
	},
	{
		module: "github.com/cert-manager/cert-manager", version: "v1.21.2",
		file:  "deploy/crds/cert-manager.io_clusterissuers.yaml",
		names: []string{"clusterissuers.cert-manager.io"},
	},
	{
		module: "istio.io/api", version: "v1.32.0",
		file:  "kubernetes/customresourcedefinitions.gen.yaml",
		names: []string{"gateways.networking.istio.io", "virtualservices.networking.istio.io"},
	},
}

// crdCache parses the CRD files once per test binary; dedicated servers
// reuse the result.
var crdCache struct {
	once sync.Once
	crds []*apiextensionsv1.CustomResourceDefinition
	err  error
}

func loadCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	crdCache.once.Do(func() {
		crdCache.crds, crdCache.err = readCRDs()
	})
	return crdCache.crds, crdCache.err
}

func readCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	dirs := map[string]string{}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, src := range crdSources {
		key := src.module + "@" + src.version
		if dirs[key] == "" {
			dir, err := moduleDir(src.module, src.version)
			if err != nil {
				return nil, err
			}
			dirs[key] = dir
		}
		path := filepath.Join(dirs[key], src.file)
		found, err := readCRDFile(path, src.names)
		if err != nil {
			return nil, err
		}
		out = append(out, found...)
	}
	return out, nil
}

// moduleDir asks the go command where module@version is, downloading it
// into the module cache if needed (offline once cached). It runs in an
// empty temporary directory so this module's go.mod is neither consulted
// nor changed.
func moduleDir(module, version string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	tmp, err := os.MkdirTemp("", "kubetest-moddl-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(goBin, "mod", "download", "-json", module+"@"+version)
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
		return "", fmt.Errorf("go mod download %s@%s (needed for its CRDs; the module proxy must be reachable once): %v %s %s",
			module, version, runErr, info.Error, bytes.TrimSpace(stderr.Bytes()))
	}
	return info.Dir, nil
}

// readCRDFile decodes the multi-document YAML at path and returns the CRDs
// named in want, failing if any is missing (an upstream rename must not
// turn into a silently absent resource).
func readCRDFile(path string, want []string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
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
