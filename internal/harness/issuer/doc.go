// Package issuer plays cert-manager where none runs: a throwaway CA, a
// Controller that issues every Certificate naming its issuer (the dev
// stack and the bench), and the status and Secret writes cert-manager
// makes, which k8s/kubetest uses to set a Certificate's state step by step
// in tests. DEV-ONLY: nothing here is linked into portal-domains.
package issuer
