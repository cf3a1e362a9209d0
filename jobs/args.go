package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

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

// ErrBadArgs marks job args that no retry can fix: not the JSON object the
// trigger writes, a domain_id that is not a canonical UUID, or a generation
// below 1. Someone edited river_job by hand or inserted a job without the
// trigger; the job is cancelled instead of retried for days.
var ErrBadArgs = errors.New("malformed job args")

// Validate checks what every writer of a domain job guarantees: domain_id
// is a UUID in canonical (lower-case, hyphenated) form, as Postgres prints
// it and the unique key hashes it, and generation is positive (a row's
// pipeline_generation starts at 1).
func (a DomainArgs) Validate() error {
	id, err := domain.ParseDomainID(a.DomainID)
	if err != nil {
		return fmt.Errorf("%w: domain_id %q is not a UUID", ErrBadArgs, a.DomainID)
	}
	if id != a.DomainID {
		return fmt.Errorf("%w: domain_id %q is not in canonical form (%s)", ErrBadArgs, a.DomainID, id)
	}
	if a.Generation < 1 {
		return fmt.Errorf("%w: generation %d is not positive", ErrBadArgs, a.Generation)
	}
	return nil
}

// DecodeDomainArgs decodes a job's encoded args the way River does
// (encoding/json into DomainArgs) and validates them. Every stage worker
// runs it before River decodes the args (see argsGuard), so malformed args
// cancel the job with a reason instead of failing it attempt after attempt.
func DecodeDomainArgs(raw []byte) (DomainArgs, error) {
	var a DomainArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return DomainArgs{}, fmt.Errorf("%w: %w", ErrBadArgs, err)
	}
	if err := a.Validate(); err != nil {
		return DomainArgs{}, err
	}
	return a, nil
}

// stageInsertOpts returns the queue, attempts and uniqueness the trigger uses
// for the kind (both come from domain.Stages).
func stageInsertOpts(kind string) river.InsertOpts {
	stage, _ := domain.StageByKind(kind)
	opts := river.InsertOpts{
		Queue:       stage.Queue,
		MaxAttempts: stage.MaxAttempts,
		Priority:    stage.Priority,
		UniqueOpts:  river.UniqueOpts{ByArgs: true},
	}
	if stage.FirstRunDelay > 0 {
		opts.ScheduledAt = time.Now().Add(stage.FirstRunDelay)
	}
	return opts
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
