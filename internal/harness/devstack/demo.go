package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
)

// Demo is fixtures/demo/demo.json: the tenants and portal domains the dev
// stack registers on every start.
type Demo struct {
	CanonicalSuffix string       `json:"canonical_suffix"`
	Tenants         []DemoTenant `json:"tenants"`
}

// DemoTenant is one demo tenant with its portal domain.
type DemoTenant struct {
	Tenant domain.TenantID `json:"tenant"`
	Name   string          `json:"name"`
	Domain string          `json:"domain"`
	// Fix, when set, is a DNS change the dev stack makes after a while,
	// the way the tenant would fix a wrong record.
	Fix *DNSFix `json:"fix,omitempty"`
}

// DNSFix replaces a record in the local DNS server After the demo domains
// are registered.
type DNSFix struct {
	AfterText string        `json:"after"`
	After     time.Duration `json:"-"`
	// Record is in zone-file syntax with absolute names.
	Record string `json:"record"`
}

// LoadDemo reads and checks demo.json from fsys.
func LoadDemo(fsys fs.FS) (Demo, error) {
	raw, err := fs.ReadFile(fsys, "demo.json")
	if err != nil {
		return Demo{}, fmt.Errorf("read demo.json: %w", err)
	}
	var d Demo
	if err := json.Unmarshal(raw, &d); err != nil {
		return Demo{}, fmt.Errorf("parse demo.json: %w", err)
	}
	if d.CanonicalSuffix, err = domain.NormalizeSuffix(d.CanonicalSuffix); err != nil {
		return Demo{}, fmt.Errorf("demo.json: %w", err)
	}
	if len(d.Tenants) == 0 {
		return Demo{}, fmt.Errorf("demo.json: no tenants")
	}
	for i := range d.Tenants {
		t := &d.Tenants[i]
		if t.Tenant, err = domain.ParseTenantID(string(t.Tenant)); err != nil {
			return Demo{}, fmt.Errorf("demo.json tenant %d: %w", i, err)
		}
		if t.Domain, err = domain.ValidatePortalDomain(t.Domain, d.CanonicalSuffix); err != nil {
			return Demo{}, fmt.Errorf("demo.json tenant %d: %w", i, err)
		}
		if t.Fix != nil {
			if t.Fix.After, err = time.ParseDuration(t.Fix.AfterText); err != nil {
				return Demo{}, fmt.Errorf("demo.json tenant %d: fix.after %q: %w", i, t.Fix.AfterText, err)
			}
			if strings.TrimSpace(t.Fix.Record) == "" {
				return Demo{}, fmt.Errorf("demo.json tenant %d: fix without a record", i)
			}
		}
	}
	return d, nil
}

// Domains are the demo domain names, in demo.json's order.
func (d Demo) Domains() []string {
	out := make([]string, len(d.Tenants))
	for i, t := range d.Tenants {
		out[i] = t.Domain
	}
	return out
}

// CanonicalHost is the CNAME target a demo tenant gets when no other
// tenant shares its first 7 characters, which is what the zone files use.
func (t DemoTenant) CanonicalHost(suffix string) string {
	return domain.CanonicalHost(t.Tenant, suffix, domain.CanonicalPrefixLength)
}

// ResetDemo deletes the demo tenants' rows (and any row holding a demo
// domain) and registers the demo domains again, in one transaction, so
// every run shows the whole pipeline from pending_dns. Jobs left from an
// earlier run find their row gone and do nothing. suffix is the configured
// canonical suffix, which the canonical hosts are built from.
func ResetDemo(ctx context.Context, pool db.Beginner, d Demo, suffix string) ([]domain.Record, error) {
	tenants := make([]string, len(d.Tenants))
	for i, t := range d.Tenants {
		tenants[i] = string(t.Tenant)
	}
	var recs []domain.Record
	err := db.InTx(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM portal_domains WHERE tenant = ANY($1::uuid[]) OR lower(domain) = ANY($2::text[])`,
			tenants, d.Domains()); err != nil {
			return fmt.Errorf("delete the previous demo rows: %w", err)
		}
		for _, t := range d.Tenants {
			res, err := db.Register(ctx, tx, t.Tenant, t.Domain, suffix)
			if err != nil {
				return fmt.Errorf("register demo domain %s: %w", t.Domain, err)
			}
			recs = append(recs, res.Record)
		}
		return nil
	})
	return recs, err
}
