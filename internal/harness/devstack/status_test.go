package devstack

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/domain"
)

func records(now time.Time) []domain.Record {
	return []domain.Record{
		{ID: "1", Tenant: "7a0e1c51-3b2d-4e6f-8a9b-0c1d2e3f4a01", Domain: "portal.northwind.test", Status: domain.StatusActive,
			StatusMessage: "Your domain is live and protected by HTTPS.", StatusChangedAt: now.Add(-3 * time.Second)},
		{ID: "2", Tenant: "1ec7ec41-4a5b-4c6d-9e7f-8a9b0c1d2e03", Domain: "portal.initech.test", Status: domain.StatusVerifyingDNS,
			StatusMessage:   "Detected CNAME www.initech.test for portal.initech.test; expected 1ec7ec4.portal.test. Update the CNAME record.",
			StatusChangedAt: now.Add(-75 * time.Second)},
	}
}

func TestRenderTable(t *testing.T) {
	t.Parallel()
	now := time.Now()

	t.Run("no line is wider than the terminal, so the redraw never wraps", func(t *testing.T) {
		t.Parallel()
		for _, width := range []int{30, 60, 80, 200} {
			for _, line := range renderTable(records(now), now, width, false) {
				require.Less(t, utf8.RuneCountInString(line), width, "width %d: %q", width, line)
			}
		}
	})

	t.Run("shows tenant7, status, time in status and the message", func(t *testing.T) {
		t.Parallel()
		lines := renderTable(records(now), now, 200, false)
		require.Len(t, lines, 3)
		require.Contains(t, lines[0], "STATUS")
		require.Contains(t, lines[1], "7a0e1c5")
		require.Contains(t, lines[2], "verifying_dns")
		require.Contains(t, lines[2], "1m15s")
		require.Contains(t, lines[2], "Detected CNAME www.initech.test")
	})

	t.Run("colours the status only when asked", func(t *testing.T) {
		t.Parallel()
		require.Contains(t, renderTable(records(now), now, 200, true)[1], "\x1b[32mactive")
		require.NotContains(t, strings.Join(renderTable(records(now), now, 200, false), ""), "\x1b[")
	})

	t.Run("caps the rows and says how many more there are", func(t *testing.T) {
		t.Parallel()
		var many []domain.Record
		for range maxRows + 3 {
			many = append(many, records(now)[0])
		}
		lines := renderTable(many, now, 120, false)
		require.Len(t, lines, maxRows+2)
		require.Contains(t, lines[len(lines)-1], "and 3 more")
	})
}

func TestBoardPlain(t *testing.T) {
	t.Parallel()
	now := time.Now()
	var out bytes.Buffer
	b := newBoard(&out, false, nil, now, []string{"portal.initech.test", "portal.northwind.test"}, nil)
	b.Note("registered %d demo domains", 2)
	b.draw(records(now), now)
	b.draw(records(now), now)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 3, "a repeated state prints nothing:\n%s", out.String())
	require.Contains(t, lines[0], "registered 2 demo domains")
	require.Contains(t, lines[1], "portal.initech.test", "demo domains come first, in demo order")
	require.Contains(t, lines[2], "portal.northwind.test")

	recs := records(now)
	recs[1].Status, recs[1].StatusMessage = domain.StatusActive, "Your domain is live and protected by HTTPS."
	var took time.Duration
	b.onAllActive = func(d time.Duration) {
		took = d
		require.Contains(t, out.String(), "all 2 demo domains are active", "printed before the callback")
	}
	b.refresh(recs, now)
	require.Positive(t, took)
	lines = strings.Split(strings.TrimSpace(out.String()), "\n")
	last := strings.Fields(lines[len(lines)-1])
	require.Equal(t, []string{"portal.initech.test", "active"}, last[1:3])
}

func TestFmtAge(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		-time.Second:           "0s",
		400 * time.Millisecond: "0.4s",
		12 * time.Second:       "12s",
		185 * time.Second:      "3m05s",
		130 * time.Minute:      "2h10m",
	} {
		require.Equal(t, want, fmtAge(d))
	}
}
