// Package stack starts the local parts that the dev stack (`make run`) and
// the bench (`make bench`) run the pipeline against, and that the tests
// start the same way: Postgres (a database or a fresh schema, migrated),
// kube-apiserver and etcd with the CRDs (localapi, which k8s/kubetest uses
// too), a DNS server (localdns), and a throwaway CA with the HTTPS gateway
// the probe dials. A Stack stops what it started, in reverse order.
package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portal-domains/portal-domains/db"
	"github.com/portal-domains/portal-domains/internal/harness/issuer"
	"github.com/portal-domains/portal-domains/internal/harness/localapi"
	"github.com/portal-domains/portal-domains/internal/harness/localdns"
)

// Stack is the parts started so far.
type Stack struct {
	// Root is the repository: scripts/ensure-postgres.sh and the
	// kube-apiserver and etcd binaries. Without it Postgres must already
	// answer and no API server can start.
	Root string
	// Out gets the output of what the stack runs (the binaries' build,
	// ensure-postgres.sh).
	Out io.Writer
	// Say reports a step in a line; default a line on Out.
	Say func(format string, args ...any)

	cleanups []func() error
}

// OnClose adds f to what Close runs.
func (s *Stack) OnClose(f func() error) { s.cleanups = append(s.cleanups, f) }

// Close stops everything in reverse order of starting and reports what it
// could not stop.
func (s *Stack) Close() error {
	var errs []error
	for _, f := range slices.Backward(s.cleanups) {
		errs = append(errs, f())
	}
	s.cleanups = nil
	return errors.Join(errs...)
}

func (s *Stack) out() io.Writer {
	if s.Out == nil {
		return io.Discard
	}
	return s.Out
}

func (s *Stack) say(format string, args ...any) {
	if s.Say != nil {
		s.Say(format, args...)
		return
	}
	fmt.Fprintf(s.out(), format+"\n", args...)
}

// Database is a migrated database, or a schema of one.
type Database struct {
	// URL connects to it; with a Schema, its search_path is the schema.
	URL    string
	Schema string
	Pool   *pgxpool.Pool
}

// Postgres opens databaseURL, creating the database when it is missing
// and, when nothing answers and Root is set, starting Postgres with
// scripts/ensure-postgres.sh first. With schemaPrefix set it works in a
// fresh schema <prefix>_<random>, dropped by Close. Then it migrates with
// settings.
func (s *Stack) Postgres(ctx context.Context, databaseURL, schemaPrefix string, settings db.Settings) (*Database, error) {
	redacted := db.RedactURL(databaseURL)
	pool, created, err := db.OpenCreating(ctx, databaseURL)
	if errors.Is(err, db.ErrUnreachable) && !db.IsMissingDatabase(err) && s.Root != "" {
		script := filepath.Join(s.Root, "scripts", "ensure-postgres.sh")
		s.say("nothing answers at %s; running %s", redacted, script)
		cmd := exec.CommandContext(ctx, script, databaseURL)
		cmd.Stdout, cmd.Stderr = s.out(), s.out()
		if runErr := cmd.Run(); runErr != nil {
			return nil, fmt.Errorf("%w (and %s failed: %w)", err, script, runErr)
		}
		pool, created, err = db.OpenCreating(ctx, databaseURL)
	}
	if err != nil {
		return nil, err
	}
	if created {
		s.say("created database %s", redacted)
	}
	d := &Database{URL: databaseURL, Pool: pool}
	if schemaPrefix != "" {
		// A pool, not one connection, made the schema: DATABASE_URL may
		// carry pgxpool settings (pool_max_conns) that a plain connection
		// refuses.
		schema, err := NewSchema(ctx, pool, databaseURL, schemaPrefix)
		pool.Close()
		if err != nil {
			return nil, err
		}
		s.OnClose(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return DropSchema(ctx, databaseURL, schema.Name)
		})
		s.say("schema %s in %s", schema.Name, redacted)
		if d.Pool, err = db.Open(ctx, schema.URL); err != nil {
			return nil, err
		}
		d.URL, d.Schema = schema.URL, schema.Name
	}
	s.OnClose(func() error { d.Pool.Close(); return nil })
	if _, err := db.MigrateUp(ctx, d.Pool, settings); err != nil {
		return nil, fmt.Errorf("migrate %s: %w", db.RedactURL(d.URL), err)
	}
	return d, nil
}

// Schema is a fresh, empty schema.
type Schema struct {
	Name string
	// URL is the database URL with search_path set to the schema.
	URL string
}

// NewSchema creates an empty schema <prefix>_<random> through q, in the
// database of databaseURL.
func NewSchema(ctx context.Context, q db.Querier, databaseURL, prefix string) (Schema, error) {
	suffix := make([]byte, 5)
	_, _ = rand.Read(suffix)
	name := prefix + "_" + hex.EncodeToString(suffix)
	u, err := url.Parse(databaseURL)
	if err != nil || u.Scheme == "" {
		return Schema{}, fmt.Errorf("database URL %s is not a postgres:// URL", db.RedactURL(databaseURL))
	}
	v := u.Query()
	v.Set("search_path", name)
	u.RawQuery = v.Encode()
	if _, err := q.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		return Schema{}, fmt.Errorf("create schema %s: %w", name, err)
	}
	return Schema{Name: name, URL: u.String()}, nil
}

// DropSchema drops a schema NewSchema made, with all it holds.
func DropSchema(ctx context.Context, databaseURL, name string) error {
	admin, err := db.Open(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("drop schema %s: %w", name, err)
	}
	defer admin.Close()
	if _, err := admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+name+" CASCADE"); err != nil {
		return fmt.Errorf("drop schema %s: %w", name, err)
	}
	return nil
}

// KubeBinaries returns the directory holding kube-apiserver and etcd,
// building them on first use (localapi.EnsureBinaries).
func (s *Stack) KubeBinaries(ctx context.Context) (string, error) {
	if s.Root == "" {
		return "", errors.New("a local kube-apiserver needs the portal-domains repository (scripts/build-kube-binaries.sh, .cache/kube-bin)")
	}
	return localapi.EnsureBinaries(ctx, s.Root, s.out())
}

// APIServer starts kube-apiserver and etcd from binDir in workDir with the
// CRDs and the namespaces. The caller stops it (Stop), so that a bench can
// start a fresh one for every phase.
func (s *Stack) APIServer(ctx context.Context, binDir, workDir string, namespaces ...string) (*localapi.Server, error) {
	begin := time.Now()
	api, err := localapi.Start(ctx, localapi.Options{BinDir: binDir, WorkDir: workDir, Namespaces: namespaces})
	if err != nil {
		return nil, err
	}
	s.say("kube-apiserver (pid %d) and etcd (pid %d) up in %s", api.APIServerPID, api.EtcdPID, time.Since(begin).Round(100*time.Millisecond))
	return api, nil
}

// DNS serves zones on addr ("127.0.0.1:0" picks a port) until Close.
func (s *Stack) DNS(addr string, zones ...*localdns.Zone) (*localdns.Server, error) {
	srv, err := localdns.Start(addr, zones...)
	if err != nil {
		return nil, err
	}
	s.OnClose(func() error { return srv.Close(context.Background()) })
	return srv, nil
}

// CA makes a throwaway CA and writes its certificate to caFile, for the
// probe (PORTAL_DOMAIN_PROBE_CA_FILE) and curl to trust.
func (s *Stack) CA(caFile string) (*issuer.CA, error) {
	ca, err := issuer.NewCA(time.Now())
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		return nil, fmt.Errorf("write the dev CA certificate: %w", err)
	}
	return ca, nil
}

// Gateway starts the HTTPS gateway the probe dials on addr ("127.0.0.1:0"
// picks a port), serving certificates from ca, until Close.
func (s *Stack) Gateway(addr string, ca *issuer.CA, logger *slog.Logger) (*Gateway, error) {
	gw, err := StartGateway(addr, ca, logger)
	if err != nil {
		return nil, err
	}
	s.OnClose(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return gw.Close(ctx)
	})
	return gw, nil
}
