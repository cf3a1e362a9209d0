// Package migrations embeds the SQL that creates the AlgaPSA-compatible
// schema. Each NNN_name.up.sql has a matching .down.sql; db.MigrateUp applies
// them in order, one transaction each. functions/ holds the current
// definition of every function and trigger, one file each, which every
// migrate up re-applies after the numbered files, so a function has one
// place to read and change.
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.sql functions/*.sql
var FS embed.FS
