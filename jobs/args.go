package jobs

import (
	"github.com/riverqueue/river"

	"github.com/portal-domains/portal-domains/domain"
)

// DomainArgs are the args of every domain job. The database trigger writes
// them as compact JSON with sorted keys, byte-identical to what River's
// InsertTx encodes, so both produce the same unique key.
type DomainArgs struct {
	DomainID   string `json:"domain_id"`
	Generation int64  `json:"generation"`
}

// stageInsertOpts returns the queue, attempts and uniqueness the trigger uses
// for the kind (both come from domain.Stages).
func stageInsertOpts(kind string) river.InsertOpts {
	stage, _ := domain.StageByKind(kind)
	return river.InsertOpts{
		Queue:       stage.Queue,
		MaxAttempts: stage.MaxAttempts,
		UniqueOpts:  river.UniqueOpts{ByArgs: true},
	}
}

// VerifyDNSArgs: check the CNAME and CAA of a domain.
type VerifyDNSArgs struct{ DomainArgs }

func (VerifyDNSArgs) Kind() string { return domain.KindVerifyDNS }

// InsertOpts matches portal_domain_stage_jobs.
func (VerifyDNSArgs) InsertOpts() river.InsertOpts { return stageInsertOpts(domain.KindVerifyDNS) }

// ApplyArgs: render and server-side apply the domain's objects.
type ApplyArgs struct{ DomainArgs }

func (ApplyArgs) Kind() string { return domain.KindApply }

// InsertOpts matches portal_domain_stage_jobs.
func (ApplyArgs) InsertOpts() river.InsertOpts { return stageInsertOpts(domain.KindApply) }

// AwaitCertificateArgs: wait for the Certificate to become Ready.
type AwaitCertificateArgs struct{ DomainArgs }

func (AwaitCertificateArgs) Kind() string { return domain.KindAwaitCertificate }

// InsertOpts matches portal_domain_stage_jobs.
func (AwaitCertificateArgs) InsertOpts() river.InsertOpts {
	return stageInsertOpts(domain.KindAwaitCertificate)
}

// ProbeArgs: HTTPS GET of the live domain.
type ProbeArgs struct{ DomainArgs }

func (ProbeArgs) Kind() string { return domain.KindProbe }

// InsertOpts matches portal_domain_stage_jobs.
func (ProbeArgs) InsertOpts() river.InsertOpts { return stageInsertOpts(domain.KindProbe) }

// DisableArgs: delete the domain's objects.
type DisableArgs struct{ DomainArgs }

func (DisableArgs) Kind() string { return domain.KindDisable }

// InsertOpts matches portal_domain_stage_jobs.
func (DisableArgs) InsertOpts() river.InsertOpts { return stageInsertOpts(domain.KindDisable) }
