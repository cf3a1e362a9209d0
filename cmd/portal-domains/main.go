// Command portal-domains runs the worker that provisions branded client-portal
// domains and the operator CLI around it. main only turns run's error into an
// exit code, so tests call run directly.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is wrong input on the command line or in the environment: the
// command did nothing and exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// errSilent is returned after the command already printed its failure
// (doctor's ✗ lines): exit 1 without another message.
var errSilent = errors.New("")

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	if errors.Is(err, errSilent) {
		return 1
	}
	// One line, whatever the libraries underneath put in their messages.
	fmt.Fprintln(stderr, "portal-domains:", strings.Join(strings.Fields(err.Error()), " "))
	var ue usageError
	if errors.As(err, &ue) || isBadInput(err) {
		return 2
	}
	return 1
}

const usageText = `portal-domains provisions branded client-portal domains with River jobs.

Usage: portal-domains <command> [flags]

Commands:
  worker     run the worker (River queues, certificate watch, /healthz, /readyz, /metrics, River UI)
  dev        run everything on this machine (Postgres, kube-apiserver, DNS, HTTPS, DEV-ONLY issuer, worker, UI) with demo domains
  migrate    up | down [--steps N] | status: the portal_domains schema and River's tables
  register   --tenant T --domain D: register (or change) a tenant's portal domain
  refresh    --tenant T --domain-id ID: force-reconcile a domain that is in progress
  retry      --tenant T --domain-id ID: start a failed domain over
  disable    --tenant T --domain-id ID: disable a domain and delete its objects
  status     [--tenant T | --domain-id ID | --status S] [--json]: domains as a table
  doctor     --domain D | --domain-id ID [--json]: run the DNS checks now and say what to fix
  render     --domain-id ID: print the Kubernetes objects of a domain without applying them
  ui         serve the River UI alone
  alerts     [--all] [--json]: open stuck-certificate alerts
  bench      [-n N] [-workers W] [-rounds R] [-rows 2,3] [-json]: measure the pipeline against baselines from the same run, as one table

Configuration is read from the environment; see README.md.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return usagef("no command given")
	}
	env := &environment{ctx: ctx, getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText)
		return nil
	case "worker":
		return env.worker(rest)
	case "dev":
		return env.dev(rest)
	case "migrate":
		return env.migrate(rest)
	case "register":
		return env.register(rest)
	case "refresh", "retry", "disable":
		return env.domainAction(cmd, rest)
	case "status":
		return env.status(rest)
	case "doctor":
		return env.doctor(rest)
	case "render":
		return env.render(rest)
	case "ui":
		return env.ui(rest)
	case "alerts":
		return env.alerts(rest)
	case "bench":
		return env.bench(rest)
	}
	fmt.Fprint(stderr, usageText)
	return usagef("unknown command %q", cmd)
}

// environment is what every command gets: no globals.
type environment struct {
	ctx    context.Context
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}
