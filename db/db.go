// Package db is portal-domains' Postgres layer: the pool, migrations, the
// portal_domains queries and guarded status transitions, and the Go enqueue
// API. Enqueueing itself happens in the database trigger (migrations/003), so
// a write through this package and a plain SQL write by the SaaS app produce
// the same River job in the same transaction.
package db

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultURL is where the worker looks for Postgres when DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/portal_domains"

// DefaultMaxConns is the pool size when the URL sets none.
const DefaultMaxConns = 16

// ErrUnreachable wraps a failure to connect, so the CLI can say what to start.
var ErrUnreachable = errors.New("database unreachable")

// Open connects a pool and checks that the server answers.
func Open(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL %s: %w", RedactURL(databaseURL), err)
	}
	// pgx defaults to max(4, cores) connections, far fewer than a worker's
	// job slots; unless the URL says otherwise (pool_max_conns), allow more.
	if !strings.Contains(databaseURL, "pool_max_conns") {
		cfg.MaxConns = max(cfg.MaxConns, DefaultMaxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", RedactURL(databaseURL), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, RedactURL(databaseURL), err)
	}
	return pool, nil
}

// IsMissingDatabase: the server answers but the URL's database does not
// exist (a fresh Postgres before the first `make run` or `make bench`).
func IsMissingDatabase(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "3D000"
}

// CreateDatabase creates the URL's database, connecting to the server's
// "postgres" database to do it; an existing database is not an error.
func CreateDatabase(ctx context.Context, databaseURL string) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("parse database URL %s: %w", RedactURL(databaseURL), err)
	}
	name := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to create database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
			return nil
		}
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// OpenCreating is Open that first creates the database when the server
// answers but the database is missing; created says it did.
func OpenCreating(ctx context.Context, databaseURL string) (pool *pgxpool.Pool, created bool, err error) {
	pool, err = Open(ctx, databaseURL)
	if !IsMissingDatabase(err) {
		return pool, false, err
	}
	if cerr := CreateDatabase(ctx, databaseURL); cerr != nil {
		return nil, false, errors.Join(err, cerr)
	}
	pool, err = Open(ctx, databaseURL)
	return pool, err == nil, err
}

// redacted replaces every secret RedactURL finds.
const redacted = "xxxxx"

// secretKeys are the connection parameters whose values RedactURL hides.
var secretKeys = map[string]bool{"password": true, "sslpassword": true}

// RedactURL hides the secrets of a Postgres connection string so it can go
// into a log, an error or an HTTP answer: the password of a URL's user
// info, password (and sslpassword) query parameters, and password values of
// a keyword/value string (host=… password='…'), quoted or not. Whatever it
// cannot read whole is replaced entirely rather than guessed at.
func RedactURL(raw string) string {
	if scheme, rest, ok := strings.Cut(raw, "://"); ok && isScheme(scheme) {
		return scheme + "://" + redactURLRest(rest)
	}
	out, ok := redactKeywordValue(raw)
	if !ok {
		return "(unparsable connection string)"
	}
	return out
}

func isScheme(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return false
		}
	}
	return true
}

// redactURLRest redacts what follows "scheme://": the user info up to the
// last '@' before the path, query or fragment keeps only its user name,
// and secret query parameters lose their values.
func redactURLRest(rest string) string {
	authEnd := len(rest)
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		authEnd = i
	}
	head, tail := rest[:authEnd], rest[authEnd:]
	if at := strings.LastIndex(head, "@"); at >= 0 {
		user, _, hasPassword := strings.Cut(head[:at], ":")
		if hasPassword {
			user += ":" + redacted
		}
		head = user + head[at:]
	}
	query, _, hasFragment := strings.Cut(tail, "#")
	if strings.HasPrefix(query, "?") {
		params := strings.Split(query[1:], "&")
		for i, p := range params {
			key, _, _ := strings.Cut(p, "=")
			if k, err := url.QueryUnescape(key); err != nil || secretKeys[strings.ToLower(strings.TrimSpace(k))] || strings.Contains(strings.ToLower(key), "password") {
				params[i] = key + "=" + redacted
			}
		}
		query = "?" + strings.Join(params, "&")
	}
	if hasFragment {
		// Nothing reads a fragment; it can only hold something pasted by
		// mistake.
		query += "#" + redacted
	}
	return head + query
}

// redactKeywordValue parses libpq's keyword/value form (key = value pairs
// separated by spaces, values single-quoted or bare, backslash escaping the
// next character) and rewrites it with secret values replaced. False when
// the string is not in that form.
func redactKeywordValue(s string) (string, bool) {
	var out []string
	i := 0
	skipSpace := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	for {
		skipSpace()
		if i >= len(s) {
			break
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		skipSpace()
		if key == "" || i >= len(s) || s[i] != '=' {
			return "", false
		}
		i++
		skipSpace()
		var value strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					value.WriteByte(s[i+1])
					i += 2
					continue
				}
				i++
				if c == '\'' {
					closed = true
					break
				}
				value.WriteByte(c)
			}
			if !closed {
				return "", false
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' && i+1 < len(s) {
					value.WriteByte(s[i+1])
					i += 2
					continue
				}
				value.WriteByte(s[i])
				i++
			}
		}
		v := value.String()
		if secretKeys[strings.ToLower(key)] || strings.Contains(strings.ToLower(key), "password") {
			v = redacted
		}
		out = append(out, key+"="+quoteValue(v))
	}
	return strings.Join(out, " "), true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// quoteValue writes a keyword/value value back, quoted when it must be.
func quoteValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r\f\v'\\") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// Beginner is what InTx needs: a pool, a connection or a transaction.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// InTx runs fn in a transaction, committing when it returns nil.
func InTx(ctx context.Context, db Beginner, fn func(tx pgx.Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Querier is satisfied by a pool, a connection and a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// pgErrorMessage returns the server's message for errors raised by our
// constraints and trigger, which are written for people.
func pgErrorMessage(err error) (code, message string, ok bool) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code, pgErr.Message, true
	}
	return "", "", false
}
