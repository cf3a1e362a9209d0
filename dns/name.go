package dns

import (
	"errors"
	"fmt"
	"strings"

	mdns "github.com/miekg/dns"
)

// ErrInvalidName is wrapped by errors about a name that is not a usable
// host name. It marks input the tenant controls, so [Decide] reports it as a
// mismatch rather than as a resolver problem.
var ErrInvalidName = errors.New("invalid DNS name")

// normalizeName turns a host name given by a person or a config file into
// the one spelling this package compares: ASCII lower case, no trailing dot.
// DNS compares names case-insensitively and "a.example." and "a.example" are
// the same name, so comparing normalised strings is what makes
// "Portal.ACME.com." equal "portal.acme.com".
//
// It is deliberately stricter than DNS itself (letters, digits, hyphens and
// underscores only; no escapes, no wildcards, no Unicode): every name it
// accepts can be put in a query as is, and a tenant who typed "portal acme"
// or "portäl.acme.com" gets told so instead of an obscure packing error.
// Underscores are allowed because service labels such as _acme-challenge are
// legitimate owner names.
func normalizeName(s string) (string, error) {
	name := strings.TrimSuffix(s, ".")
	if name == "" {
		return "", fmt.Errorf("%w: %q is empty", ErrInvalidName, s)
	}
	if len(name) > 253 {
		return "", fmt.Errorf("%w: %q is longer than 253 characters", ErrInvalidName, s)
	}
	var b strings.Builder
	b.Grow(len(name))
	for label := range strings.SplitSeq(name, ".") {
		if err := checkLabel(label); err != nil {
			return "", fmt.Errorf("%w: %q: %s", ErrInvalidName, s, err)
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func checkLabel(label string) error {
	switch {
	case label == "":
		return errors.New("empty label (two dots in a row, or a leading dot)")
	case len(label) > 63:
		return fmt.Errorf("label %q is longer than 63 characters", label)
	case label[0] == '-' || label[len(label)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", label)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		case c >= 0x80:
			return fmt.Errorf("label %q is not ASCII; use its punycode (xn--) form", label)
		default:
			return fmt.Errorf("label %q contains %q", label, c)
		}
	}
	return nil
}

// canonical is the comparison key for names that come back from servers:
// fully qualified and lower case. Server names are not validated with
// normalizeName because a CNAME target may legally be anything, and
// rejecting it would hide what the tenant actually configured.
func canonical(name string) string { return mdns.CanonicalName(name) }

// display is how names appear in observations and messages: lower case
// without the trailing dot, the way tenants type them.
func display(name string) string {
	if name == "." {
		return name
	}
	return strings.TrimSuffix(canonical(name), ".")
}

// sameName compares two names the DNS way: case-insensitively and ignoring
// a trailing dot. It is exact otherwise: no suffix or prefix matching.
func sameName(a, b string) bool { return canonical(a) == canonical(b) }

// parent drops the leftmost label of a normalised (dot-less) name; it
// returns "" for a single-label name, the end of a climb towards the root.
func parent(name string) string {
	_, rest, ok := strings.Cut(name, ".")
	if !ok {
		return ""
	}
	return rest
}
