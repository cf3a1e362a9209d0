package jobs

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/portal-domains/portal-domains/domain"
)

// maxCADetail bounds how much of the CA's own message goes into
// status_message: enough for the address and error it names.
const maxCADetail = 300

// fetchedURL is how CAs repeat the URL they fetched inside their detail
// (Pebble: `Get "http://…": `, Let's Encrypt: `Fetching http://…: `); the
// message names the URL once already.
var fetchedURL = regexp.MustCompile(`(?:Get "[^"]*"|Fetching \S+): `)

// caName is how tenant messages name the CA whose CAA identity is
// identity.
func caName(identity string) string {
	switch strings.ToLower(strings.TrimSpace(identity)) {
	case "letsencrypt.org":
		return "Let's Encrypt"
	case "":
		return "The certificate authority"
	}
	return "The certificate authority (" + identity + ")"
}

// CAFailureMessage tells the tenant (and doctor's reader), in plain words, why the CA refused to
// validate rec's domain and what to check: the CA's own reason, which
// cert-manager's Certificate does not carry.
func CAFailureMessage(rec domain.Record, caaIdentity string, f CAFailure) string {
	ca, host, target := caName(caaIdentity), rec.Domain, rec.CNAMETarget()
	detail := strings.TrimRight(strings.Join(strings.Fields(f.Detail), " "), ". ")
	detail = fetchedURL.ReplaceAllString(detail, "")
	if len(detail) > maxCADetail {
		detail = detail[:maxCADetail-1] + "…"
	}
	url := f.URL
	if url == "" {
		url = "http://" + host + "/.well-known/acme-challenge/…"
	}
	cname := fmt.Sprintf("Check that %s's CNAME points to %s", host, target)
	switch f.Kind {
	case "connection":
		return fmt.Sprintf("%s could not reach %s: %s. %s and nothing in front of it blocks port 80.", ca, url, detail, cname)
	case "dns":
		return fmt.Sprintf("%s could not look up %s: %s. %s and that the DNS servers of %s answer.", ca, host, detail, cname, host)
	case "unauthorized", "incorrectResponse":
		return fmt.Sprintf("%s fetched %s but did not get this platform's answer: %s. %s and that no proxy or CDN in front of it answers that path itself.", ca, url, detail, cname)
	case "tls":
		return fmt.Sprintf("%s could not complete a TLS connection while fetching %s: %s. %s and nothing in front of it redirects port 80 elsewhere.", ca, url, detail, cname)
	case "caa":
		return fmt.Sprintf("%s is not allowed to issue certificates for %s by its CAA records: %s. Add a CAA record allowing %s, or remove the CAA records that forbid it.", ca, host, detail, caaIdentity)
	case "rateLimited":
		return fmt.Sprintf("%s is limiting certificates for %s for now: %s. Nothing needs changing; the certificate is requested again later.", ca, host, detail)
	case "rejectedIdentifier":
		return fmt.Sprintf("%s will not issue a certificate for %s: %s. Contact support.", ca, host, detail)
	}
	return fmt.Sprintf("%s refused to validate %s: %s. %s and nothing in front of it blocks port 80.", ca, host, detail, cname)
}
