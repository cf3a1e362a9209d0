// Package migrations embeds the numbered SQL files that create the
// AlgaPSA-compatible schema. Each NNN_name.up.sql has a matching .down.sql;
// db.Migrate applies them in order, one transaction each.
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS
