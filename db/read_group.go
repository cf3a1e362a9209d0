package db

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portal-domains/portal-domains/domain"
)

// ReadGroup reads the rows of jobs that start together in one query
// (`WHERE id = ANY(...)`) instead of one query each: River fetches jobs in
// batches, so their first reads arrive together. A read alone (an idle
// pipeline) runs at once, as GetDomain.
type ReadGroup struct {
	pool  *pgxpool.Pool
	reads *batcher[string, recordResult]
}

// recordResult is one request's outcome in a ReadGroup or TransitionGroup
// batch.
type recordResult struct {
	rec domain.Record
	err error
}

// matchByID gives each request of a batch the row a set-based query
// returned for its id, or missing(req) when it returned none.
func matchByID[Req any](reqs []Req, byID map[string]domain.Record, id func(Req) string, missing func(Req) error) []recordResult {
	results := make([]recordResult, len(reqs))
	for i, req := range reqs {
		if rec, ok := byID[id(req)]; ok {
			results[i] = recordResult{rec: rec}
		} else {
			results[i] = recordResult{err: missing(req)}
		}
	}
	return results
}

// NewReadGroup reads at most maxGroup rows per query, at most concurrent
// queries at once.
func NewReadGroup(pool *pgxpool.Pool, maxGroup, concurrent int) *ReadGroup {
	g := &ReadGroup{pool: pool}
	g.reads = newBatcher(maxGroup, concurrent, func(id string) string { return id }, g.read)
	return g
}

// GetDomain is GetDomain, read with whatever other reads are waiting.
func (g *ReadGroup) GetDomain(ctx context.Context, id string) (domain.Record, error) {
	canonical, err := domain.ParseDomainID(id)
	if err != nil {
		return domain.Record{}, err
	}
	r, err := g.reads.do(ctx, canonical)
	if err != nil {
		return domain.Record{}, err
	}
	return r.rec, r.err
}

func (g *ReadGroup) read(ctx context.Context, ids []string) []recordResult {
	if len(ids) > 1 {
		byID, err := DomainsByID(ctx, g.pool, ids)
		if err == nil {
			return matchByID(ids, byID, func(id string) string { return id }, func(string) error { return ErrNotFound })
		}
		// Whatever broke the query, each read gets its own outcome.
	}
	results := make([]recordResult, len(ids))
	for i, id := range ids {
		rec, err := GetDomain(ctx, g.pool, id)
		results[i] = recordResult{rec: rec, err: err}
	}
	return results
}
