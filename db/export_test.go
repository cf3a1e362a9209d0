package db

// Exported for the query-plan tests in db_test.
var (
	StuckDomainsSQL  = stuckDomainsSQL
	StuckDomainsArgs = stuckDomainsArgs
	OpenAlertsSQL    = openAlertsSQL
)
