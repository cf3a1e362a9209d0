// Package reliability holds the end-to-end reliability tests of
// portal-domains: real `portal-domains worker` processes (built once per
// test binary) against real Postgres, a real DNS server, a real
// kube-apiserver and a real HTTPS endpoint, while the test kills workers
// with SIGKILL and SIGTERM, restarts Postgres, stops the API server, drops
// DNS packets and feeds malformed input through every door. Each test then
// checks the guarantees listed in README.md ("Guarantees"): every domain
// converges, no job is lost or run for the same generation twice, objects
// are applied once by the portal-domains field manager, and no domain's
// history moves backwards.
//
// `make test` runs them at a size that fits a few minutes on two cores;
// `make soak` sets PORTAL_DOMAIN_SOAK=1 for more domains, more kills and
// longer outages. The tests never skip: a server that cannot start fails
// the test.
package reliability
