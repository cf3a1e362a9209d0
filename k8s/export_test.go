package k8s

// WatchedCert is the compact form the WatchCertificates cache holds.
type WatchedCert = watchedCert

// CachedCertificate is the object the running WatchCertificates informer
// holds for the Certificate namespace/name.
func CachedCertificate(c *Client, namespace, name string) (any, bool) {
	inf := c.certs.Load()
	if inf == nil {
		return nil, false
	}
	obj, exists, err := (*inf).GetStore().GetByKey(namespace + "/" + name)
	return obj, err == nil && exists
}
