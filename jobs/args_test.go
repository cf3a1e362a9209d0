package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/domain"
)

const validID = "7c1e2f00-0000-4000-8000-00000000b10e"

func TestDecodeDomainArgs(t *testing.T) {
	t.Parallel()

	t.Run("the trigger's args decode", func(t *testing.T) {
		t.Parallel()
		a, err := DecodeDomainArgs([]byte(`{"domain_id":"` + validID + `","generation":3}`))
		require.NoError(t, err)
		require.Equal(t, DomainArgs{DomainID: validID, Generation: 3}, a)
	})

	for name, raw := range map[string]string{
		"not a uuid":          `{"domain_id":"not-a-uuid","generation":1}`,
		"empty object":        `{}`,
		"upper-case uuid":     `{"domain_id":"` + strings.ToUpper(validID) + `","generation":1}`,
		"braced uuid":         `{"domain_id":"{` + validID + `}","generation":1}`,
		"generation zero":     `{"domain_id":"` + validID + `","generation":0}`,
		"negative generation": `{"domain_id":"` + validID + `","generation":-4}`,
		"number as id":        `{"domain_id":5,"generation":1}`,
		"string generation":   `{"domain_id":"` + validID + `","generation":"1"}`,
		"fractional gen":      `{"domain_id":"` + validID + `","generation":1.5}`,
		"array":               `[]`,
		"null":                `null`,
		"not json":            `domain_id=` + validID,
		"trailing garbage":    `{"domain_id":"` + validID + `","generation":1} x`,
	} {
		t.Run("refuses "+name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodeDomainArgs([]byte(raw))
			require.ErrorIs(t, err, ErrBadArgs)
		})
	}
}

func TestArgsGuard(t *testing.T) {
	t.Parallel()
	g := &argsGuard{logger: slog.New(slog.DiscardHandler)}

	t.Run("malformed args cancel the job without running it", func(t *testing.T) {
		t.Parallel()
		ran := false
		err := g.Work(context.Background(), &rivertype.JobRow{ID: 1, Kind: "apply", EncodedArgs: []byte(`{}`)},
			func(context.Context) error { ran = true; return nil })
		require.False(t, ran)
		var cancel *rivertype.JobCancelError
		require.ErrorAs(t, err, &cancel)
		require.ErrorIs(t, err, ErrBadArgs)
	})

	t.Run("good args run the job", func(t *testing.T) {
		t.Parallel()
		inner := errors.New("inner")
		err := g.Work(context.Background(), &rivertype.JobRow{ID: 2, Kind: "apply",
			EncodedArgs: []byte(`{"domain_id":"` + validID + `","generation":1}`)},
			func(context.Context) error { return inner })
		require.ErrorIs(t, err, inner)
	})

	t.Run("every stage worker carries the guard", func(t *testing.T) {
		t.Parallel()
		deps := &Deps{}
		for _, w := range []interface {
			Middleware(*rivertype.JobRow) []rivertype.WorkerMiddleware
		}{&VerifyDNSWorker{deps: deps}, &ApplyWorker{deps: deps}, &AwaitCertificateWorker{deps: deps},
			&ProbeWorker{deps: deps}, &DisableWorker{deps: deps}} {
			mw := w.Middleware(nil)
			require.Len(t, mw, 1)
			require.IsType(t, &argsGuard{}, mw[0])
		}
	})
}

// FuzzDecodeDomainArgs: whatever bytes sit in river_job.args, decoding
// never panics, and what it accepts is exactly what the trigger could have
// written: a canonical UUID and a positive generation that re-encode to
// args decoding to the same value.
func FuzzDecodeDomainArgs(f *testing.F) {
	for _, seed := range []string{
		`{"domain_id":"` + validID + `","generation":1}`,
		`{"domain_id":"not-a-uuid"}`,
		`{}`,
		`{"domain_id":null,"generation":9223372036854775807}`,
		`{"generation":-1,"domain_id":"` + validID + `","extra":[1,2,{"a":null}]}`,
		`{"domain_id":"` + strings.ToUpper(validID) + `","generation":2}`,
		`"` + validID + `"`,
		`{"domain_id":"urn:uuid:` + validID + `","generation":1}`,
		`{"domain_id":"` + validID + `","generation":1e3}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		a, err := DecodeDomainArgs(raw)
		if err != nil {
			require.ErrorIs(t, err, ErrBadArgs)
			require.Zero(t, a)
			// The guard turns every refusal into a cancellation.
			gerr := (&argsGuard{}).Work(context.Background(), &rivertype.JobRow{EncodedArgs: raw},
				func(context.Context) error { t.Fatal("ran a job with malformed args"); return nil })
			var cancel *rivertype.JobCancelError
			require.ErrorAs(t, gerr, &cancel)
			return
		}
		require.Positive(t, a.Generation)
		require.Len(t, a.DomainID, 36)
		require.Equal(t, strings.ToLower(a.DomainID), a.DomainID)
		again, err := json.Marshal(VerifyDNSArgs{a})
		require.NoError(t, err)
		require.Equal(t, `{"domain_id":"`+a.DomainID+`","generation":`+strconv.FormatInt(a.Generation, 10)+`}`, string(again),
			"re-encodes to the trigger's bytes, so the unique key matches")
		back, err := DecodeDomainArgs(again)
		require.NoError(t, err)
		require.Equal(t, a, back)
	})
}

func TestDecideCertificateDrift(t *testing.T) {
	t.Parallel()
	rec := domain.Record{Domain: "portal.acme.test", StatusChangedAt: time.Now()}
	d := decideCertificate(CertState{Found: true, Ready: "True", RoutesPresent: true,
		Drift: "dnsNames [elsewhere.acme.test] instead of [portal.acme.test]"}, rec, time.Now(), time.Hour, "")
	require.True(t, d.Reapply, "a hand-edited Certificate is applied again, even when Ready")
	require.Equal(t, domain.StatusCertificateIssuing, d.To)
	require.Contains(t, d.Message, "elsewhere.acme.test")
	require.Positive(t, d.Snooze)
}
