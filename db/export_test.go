package db

// Exported for the query-plan tests in db_test.
var (
	StuckDomainsSQL  = stuckDomainsSQL
	StuckDomainsArgs = stuckDomainsArgs
	OpenAlertsSQL    = openAlertsSQL
)

// Waiting is how many changes wait for a group commit.
func (g *TransitionGroup) Waiting() int { return g.batches.waitingCount() }
