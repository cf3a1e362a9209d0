package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// RowIDs are every row, in table order.
func RowIDs() []string { return append(DefaultRowIDs(), "7a", "7b") }

// DefaultRowIDs are the rows a run without Options.Rows has. Row 7 runs on
// request only: its baseline polls once a minute, so it takes minutes
// whatever the size, and it needs port 80 for HTTP-01.
func DefaultRowIDs() []string { return []string{"1", "2", "3", "4a", "4b", "5", "6"} }

func sortRows(rows []Row) {
	order := RowIDs()
	slices.SortStableFunc(rows, func(a, b Row) int {
		return slices.Index(order, a.ID) - slices.Index(order, b.ID)
	})
}

// percentiles by nearest rank, in milliseconds.
func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(sorted)))) - 1
		return ms(sorted[min(max(i, 0), len(sorted)-1)])
	}
	return Percentiles{P50: at(0.50), P95: at(0.95), P99: at(0.99)}
}

// WriteJSON writes the result as one JSON document.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write bench result: %w", err)
	}
	return nil
}

// WriteTable writes the one table: each row's result next to its baseline
// from the same run, their ratio, the target and PASS or MISS, then the
// notes that say how each row was taken.
func (r *Result) WriteTable(w io.Writer) error {
	m := r.Machine
	var sb strings.Builder
	sizes := make([]string, 0, 2)
	if slices.ContainsFunc(r.Rows, func(row Row) bool { return slices.Contains(DefaultRowIDs(), row.ID) }) {
		sizes = append(sizes, thousands(r.N)+" domains per throughput row")
	}
	if r.Registrations > 0 {
		sizes = append(sizes, fmt.Sprintf("row 7: %s registrations at %s/s", thousands(r.Registrations), number(r.RegistrationRate)))
	}
	fmt.Fprintf(&sb, "portal-domains bench: %s; workers per queue: dns %d, kubernetes %d, probe %d\n",
		strings.Join(sizes, "; "), r.Workers.DNS, r.Workers.Kubernetes, r.Workers.Probe)
	busy := ""
	if m.Busy() {
		busy = " (the machine was shared: other work was running, numbers are noisy)"
	}
	fmt.Fprintf(&sb, "machine: %d CPUs, %.1f GiB, %s, PostgreSQL %s; load average %.1f at the start%s, %.1f at the end; took %s\n",
		m.CPUs, m.MemoryGiB, m.Go, m.Postgres, m.LoadBefore, busy, m.LoadAfter, r.Took.Round(time.Second))
	sb.WriteString("ratio = result / baseline; latencies are p50 / p95 / p99 and their ratio compares p95\n\n")

	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tmeasure\tresult\tbaseline (same run)\tratio\ttarget\t")
	for _, row := range r.Rows {
		verdict := "MISS"
		if row.Pass {
			verdict = "PASS"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s  %s\t%.2f\t%s\t%s\n", row.ID, row.Measure, row.result(),
			row.baseline(), row.BaselineName, row.Ratio, row.Target, verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	sb.WriteString("\n")
	for _, row := range r.Rows {
		if row.Note != "" {
			fmt.Fprintf(&sb, "%-3s %s\n", row.ID, row.Note)
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

func (row Row) result() string {
	if row.Percentiles != nil {
		return formatPercentiles(*row.Percentiles)
	}
	return formatValue(row.Value, row.Unit)
}

func (row Row) baseline() string {
	if row.BaselinePercentiles != nil {
		return formatPercentiles(*row.BaselinePercentiles)
	}
	return formatValue(row.Baseline, row.Unit)
}

func formatPercentiles(p Percentiles) string {
	return fmt.Sprintf("%s / %s / %s ms", number(p.P50), number(p.P95), number(p.P99))
}

func formatValue(v float64, unit string) string { return number(v) + " " + unit }

// number keeps three significant digits or so: 1234, 412, 41.2, 4.12.
func number(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
