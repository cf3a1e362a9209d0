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
	reads *batcher[string, readResult]
}

type readResult struct {
	rec domain.Record
	err error
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

func (g *ReadGroup) read(ctx context.Context, ids []string) []readResult {
	results := make([]readResult, len(ids))
	if len(ids) > 1 {
		byID, err := DomainsByID(ctx, g.pool, ids)
		if err == nil {
			for i, id := range ids {
				rec, ok := byID[id]
				if !ok {
					results[i] = readResult{err: ErrNotFound}
					continue
				}
				results[i] = readResult{rec: rec}
			}
			return results
		}
		// Whatever broke the query, each read gets its own outcome.
	}
	for i, id := range ids {
		rec, err := GetDomain(ctx, g.pool, id)
		results[i] = readResult{rec: rec, err: err}
	}
	return results
}
