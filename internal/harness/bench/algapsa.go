package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/portal-domains/portal-domains/dns"
	"github.com/portal-domains/portal-domains/k8s"
)

// The AlgaPSA design as row 7's baseline models it: a poll of the table
// every minute, DNS tried up to 12 times 10 s apart, every apply
// re-applying every domain's objects, Ready read at the next poll.
const (
	algapsaPoll     = time.Minute
	algapsaDNSTries = 12
	algapsaDNSRetry = 10 * time.Second
	// nsAlgaPSA holds the baseline's objects, apart from the worker's.
	nsAlgaPSA = "bench-algapsa"
)

// algapsaSchema is the baseline's own table in the bench schema: the
// product's trigger and jobs never see these rows.
const algapsaSchema = `CREATE TABLE IF NOT EXISTS algapsa_domains (
	id uuid PRIMARY KEY,
	tenant uuid NOT NULL,
	domain text NOT NULL UNIQUE,
	canonical_host text NOT NULL,
	status text NOT NULL DEFAULT 'pending',
	inserted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	active_at timestamptz
)`

// algapsa is AlgaPSA's provisioning design, run by the bench (not the
// product) against the same DNS server, API server, cert-manager and
// Pebble as the pipeline: a loop that, each poll, marks active what an
// earlier poll applied and cert-manager has since made Ready, checks DNS
// for new rows (retrying a failed check up to 12 times, 10 s apart), and
// then server-side applies every domain's objects, old and new.
type algapsa struct {
	pool     *pgxpool.Pool
	kube     *k8s.Client
	resolver *dns.Resolver
	cfg      k8s.Config
	poll     time.Duration
	// workers apply at once, as many as the pipeline's kubernetes queue
	// has: more generous than one apply after another.
	workers int

	// ticks and applies count what it did, for the note.
	ticks, applies int
}

type algapsaRow struct {
	d      benchDomain
	status string
}

// run polls every a.poll, the first poll a.poll after it starts, until
// every row of ds is active or its DNS failed.
func (a *algapsa) run(ctx context.Context, ds []benchDomain, deadline time.Duration) error {
	byID := make(map[string]benchDomain, len(ds))
	for _, d := range ds {
		byID[d.ID] = d
	}
	ticker := time.NewTicker(a.poll)
	defer ticker.Stop()
	timeout := time.After(deadline)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout:
			return fmt.Errorf("the AlgaPSA baseline had not finished after %s", deadline)
		case <-ticker.C:
		}
		a.ticks++
		done, err := a.tick(ctx, byID)
		if err != nil {
			return err
		}
		if done == len(ds) {
			return nil
		}
	}
}

// tick is one poll; it returns how many of the rows are finished.
func (a *algapsa) tick(ctx context.Context, byID map[string]benchDomain) (int, error) {
	rows, err := a.pool.Query(ctx, `SELECT id::text, status FROM algapsa_domains ORDER BY inserted_at`)
	if err != nil {
		return 0, fmt.Errorf("AlgaPSA poll: %w", err)
	}
	type polled struct {
		ID, Status string
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[polled])
	if err != nil {
		return 0, fmt.Errorf("AlgaPSA poll: %w", err)
	}
	all := make([]*algapsaRow, 0, len(got))
	for _, p := range got {
		d, ok := byID[p.ID]
		if !ok {
			return 0, fmt.Errorf("AlgaPSA poll: unknown row %s", p.ID)
		}
		all = append(all, &algapsaRow{d: d, status: p.Status})
	}

	// Ready is read only now, a poll after the apply.
	for _, r := range all {
		if r.status != "issuing" {
			continue
		}
		names, err := k8s.NamesFor(r.d.k8s(), a.cfg)
		if err != nil {
			return 0, err
		}
		st, err := a.kube.GetCertificateStatus(ctx, names.CertNamespace, names.Certificate)
		if err != nil {
			return 0, err
		}
		if st.IsReady() {
			if err := a.set(ctx, r, "active"); err != nil {
				return 0, err
			}
		}
	}

	// DNS for new rows, each tried until it passes or 12 tries have failed.
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range all {
		if r.status != "pending" {
			continue
		}
		g.Go(func() error {
			status := "dns_failed"
			if a.checkDNS(gctx, r.d) {
				status = "issuing"
			}
			return a.set(gctx, r, status)
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}

	// Every apply re-applies every domain's objects.
	if err := a.applyAll(ctx, all); err != nil {
		return 0, err
	}
	done := 0
	for _, r := range all {
		if r.status == "active" || r.status == "dns_failed" {
			done++
		}
	}
	return done, nil
}

// checkDNS is AlgaPSA's DNS step: the same resolver and server as the
// pipeline, up to 12 tries 10 s apart.
func (a *algapsa) checkDNS(ctx context.Context, d benchDomain) bool {
	for try := 1; try <= algapsaDNSTries; try++ {
		if a.resolver.Check(ctx, d.Name, d.Canonical, caaIdentity).Outcome == dns.OutcomeVerified {
			return true
		}
		if try == algapsaDNSTries {
			break
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(algapsaDNSRetry):
		}
	}
	return false
}

func (a *algapsa) set(ctx context.Context, r *algapsaRow, status string) error {
	_, err := a.pool.Exec(ctx, `UPDATE algapsa_domains SET status = $2,
		active_at = CASE WHEN $2 = 'active' THEN clock_timestamp() END WHERE id = $1`, r.d.ID, status)
	if err != nil {
		return fmt.Errorf("AlgaPSA: %s → %s: %w", r.d.Name, status, err)
	}
	r.status = status
	return nil
}

// applyAll server-side applies the objects of every row past DNS.
func (a *algapsa) applyAll(ctx context.Context, all []*algapsaRow) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(a.workers)
	for _, r := range all {
		if r.status == "pending" || r.status == "dns_failed" {
			continue
		}
		objs, err := k8s.Render(r.d.k8s(), a.cfg)
		if err != nil {
			return err
		}
		a.applies++
		g.Go(func() error {
			_, err := a.kube.Apply(gctx, objs)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("AlgaPSA apply: %w", err)
	}
	return nil
}
