package devstack

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/domain"
)

// refreshEvery is how often the board reads the database.
const refreshEvery = 500 * time.Millisecond

// maxRows caps the live table; `portal-domains status` lists everything.
const maxRows = 20

// board shows the domains as the pipeline moves them. On a terminal (live)
// it redraws a table in place from the database every refreshEvery; to a
// pipe or file it prints one line per status or message change, which
// reads well in CI logs and `make run | tee`.
type board struct {
	out   io.Writer
	live  bool
	color bool
	width func() int
	start time.Time
	// demo are the demo domain names: shown first, and "all active" is
	// about them.
	demo        []string
	onAllActive func(took time.Duration)

	mu    sync.Mutex
	notes []note // not yet printed (plain) / the footer (live)

	lines     int               // live: lines of the last frame
	seen      map[string]string // plain: domain id -> last status and message
	printed   int               // plain: notes already printed
	allActive bool
}

type note struct {
	at   time.Duration
	text string
}

func newBoard(out io.Writer, live bool, width func() int, start time.Time, demo []string, onAllActive func(time.Duration)) *board {
	if width == nil {
		width = func() int { return 120 }
	}
	return &board{out: out, live: live, color: live, width: width, start: start, demo: demo,
		onAllActive: onAllActive, seen: map[string]string{}}
}

// Note adds a line about something the dev stack did (a DNS fix, an issued
// certificate); it shows on the next refresh. Safe from any goroutine.
func (b *board) Note(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.notes = append(b.notes, note{at: time.Since(b.start), text: fmt.Sprintf(format, args...)})
}

// Run refreshes until ctx is done. A failed read shows as a note and is
// tried again: the database may come back.
func (b *board) Run(ctx context.Context, q db.Querier) error {
	t := time.NewTicker(refreshEvery)
	defer t.Stop()
	lastErr := ""
	for {
		recs, err := db.ListDomains(ctx, q, db.ListFilter{Limit: 1000})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if err.Error() != lastErr {
				b.Note("could not read the domains: %v", err)
				lastErr = err.Error()
			}
		} else {
			lastErr = ""
			b.refresh(recs, time.Now())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// refresh shows recs and, the first time every demo domain is active, calls
// onAllActive — after the draw, so whoever it wakes sees that line printed.
func (b *board) refresh(recs []domain.Record, now time.Time) {
	took, justNow := b.checkAllActive(recs)
	b.draw(recs, now)
	if justNow && b.onAllActive != nil {
		b.onAllActive(took)
	}
}

// checkAllActive notes the moment every demo domain is first active and
// reports it (justNow) with the time since start.
func (b *board) checkAllActive(recs []domain.Record) (took time.Duration, justNow bool) {
	if b.allActive || len(b.demo) == 0 {
		return 0, false
	}
	active := map[string]bool{}
	for _, r := range recs {
		if r.Status == domain.StatusActive {
			active[r.Domain] = true
		}
	}
	for _, d := range b.demo {
		if !active[d] {
			return 0, false
		}
	}
	b.allActive = true
	took = time.Since(b.start)
	b.Note("✓ all %d demo domains are active, %s after start", len(b.demo), took.Round(100*time.Millisecond))
	return took, true
}

func (b *board) draw(recs []domain.Record, now time.Time) {
	b.mu.Lock()
	notes := slices.Clone(b.notes)
	b.mu.Unlock()
	if !b.live {
		b.printChanges(recs, notes, now)
		return
	}
	if len(notes) > 6 { // the footer keeps the latest few
		notes = notes[len(notes)-6:]
	}
	frame := renderTable(orderDemoFirst(recs, b.demo), now, b.width(), b.color)
	frame = append(frame, "", fitWidth(summary(recs, now.Sub(b.start)), b.width()))
	for _, n := range notes {
		frame = append(frame, fitWidth(fmt.Sprintf(" %7s  %s", "+"+fmtAge(n.at), n.text), b.width()))
	}
	frame = append(frame, " Ctrl-C stops everything.")
	var sb strings.Builder
	if b.lines > 0 {
		fmt.Fprintf(&sb, "\x1b[%dA\r", b.lines) // back to the top of the last frame
	}
	sb.WriteString("\x1b[J") // and clear it
	for _, l := range frame {
		sb.WriteString(l)
		sb.WriteByte('\n')
	}
	_, _ = io.WriteString(b.out, sb.String())
	b.lines = len(frame)
}

// printChanges is the non-terminal output: notes and changed rows, one
// line each.
func (b *board) printChanges(recs []domain.Record, notes []note, now time.Time) {
	at := "+" + fmtAge(now.Sub(b.start))
	for _, n := range notes[b.printed:] {
		fmt.Fprintf(b.out, "%7s  %s\n", "+"+fmtAge(n.at), n.text)
	}
	b.printed = len(notes)
	for _, r := range orderDemoFirst(recs, b.demo) {
		key := string(r.Status) + "\x00" + r.StatusMessage
		if b.seen[r.ID] == key {
			continue
		}
		b.seen[r.ID] = key
		fmt.Fprintf(b.out, "%7s  %-24s %-20s %s\n", at, r.Domain, r.Status, oneLine(r.StatusMessage))
	}
}

// orderDemoFirst puts the demo domains first, in demo order, then the rest
// by creation.
func orderDemoFirst(recs []domain.Record, demo []string) []domain.Record {
	out := slices.Clone(recs)
	rank := func(r domain.Record) int {
		if i := slices.Index(demo, r.Domain); i >= 0 {
			return i
		}
		return len(demo)
	}
	slices.SortStableFunc(out, func(a, b domain.Record) int { return rank(a) - rank(b) })
	return out
}

// renderTable lays out the domains for a terminal width columns wide; with
// color the status is green (active), red (failed), grey (disabled) or
// yellow (in progress).
func renderTable(recs []domain.Record, now time.Time, width int, color bool) []string {
	more := 0
	if len(recs) > maxRows {
		more = len(recs) - maxRows
		recs = recs[:maxRows]
	}
	domainW := len("DOMAIN")
	for _, r := range recs {
		domainW = max(domainW, utf8.RuneCountInString(r.Domain))
	}
	const statusW = len("pending_certificate")
	row := func(d, tenant, status, age, msg, colorCode string) string {
		prefix := fmt.Sprintf(" %-*s  %-7s  ", domainW, d, tenant)
		statusCell := fmt.Sprintf("%-*s", statusW, status)
		if colorCode != "" {
			statusCell = colorCode + statusCell + "\x1b[0m"
		}
		rest := fmt.Sprintf("  %6s  ", age)
		used := utf8.RuneCountInString(prefix) + statusW + utf8.RuneCountInString(rest)
		if used+8 > width {
			// Too narrow for the columns: a plain cut line, never a wrapped
			// one (a wrap would throw the in-place redraw off).
			return fitWidth(fmt.Sprintf(" %s %s %s %s", d, status, age, msg), width)
		}
		return prefix + statusCell + rest + truncate(msg, width-used-1)
	}
	lines := []string{row("DOMAIN", "TENANT", "STATUS", "FOR", "MESSAGE", "")}
	if len(recs) == 0 {
		lines = append(lines, " (no domains yet)")
	}
	for _, r := range recs {
		code := ""
		if color {
			code = statusColor(r.Status)
		}
		lines = append(lines, row(r.Domain, r.Tenant.Tenant7(), string(r.Status), fmtAge(now.Sub(r.StatusChangedAt)), oneLine(r.StatusMessage), code))
	}
	if more > 0 {
		lines = append(lines, fmt.Sprintf(" … and %d more (portal-domains status lists them all)", more))
	}
	return lines
}

func statusColor(s domain.Status) string {
	switch s {
	case domain.StatusActive:
		return "\x1b[32m"
	case domain.StatusDNSFailed, domain.StatusCertificateFailed:
		return "\x1b[31m"
	case domain.StatusDisabled:
		return "\x1b[90m"
	}
	return "\x1b[33m"
}

// summary counts domains by status: "4 domains: 3 active, 1 verifying_dns · 12s since start".
func summary(recs []domain.Record, since time.Duration) string {
	counts := map[domain.Status]int{}
	for _, r := range recs {
		counts[r.Status]++
	}
	var parts []string
	for _, s := range domain.Statuses {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	if len(parts) == 0 {
		parts = []string{"none yet"}
	}
	return fmt.Sprintf(" %d domains: %s · %s since start", len(recs), strings.Join(parts, ", "), fmtAge(since))
}

// fmtAge is a short duration: 0.4s, 12s, 3m05s, 2h10m.
func fmtAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// truncate shortens s to n runes, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// fitWidth truncates a line without colour codes to a terminal width.
func fitWidth(s string, width int) string { return truncate(s, width-1) }
