package db

// Exported for the query-plan tests in db_test.
var (
	StuckDomainsSQL  = stuckDomainsSQL
	StuckDomainsArgs = stuckDomainsArgs
	OpenAlertsSQL    = openAlertsSQL
)

// Waiting is how many changes wait for a group commit.
func (g *TransitionGroup) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiting)
}
