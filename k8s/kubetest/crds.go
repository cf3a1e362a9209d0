package kubetest

import (
	"context"
	"sync"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/portal-domains/portal-domains/internal/harness/localapi"
)

// crdCache parses the CRD files (localapi.CRDSources, read from the module
// cache) once per test binary; dedicated servers reuse the result.
var crdCache struct {
	once sync.Once
	crds []*apiextensionsv1.CustomResourceDefinition
	err  error
}

func loadCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	crdCache.once.Do(func() {
		crdCache.crds, crdCache.err = localapi.LoadCRDs(context.Background(), localapi.CRDSources())
	})
	return crdCache.crds, crdCache.err
}
