// Package cli is the portal-domains command line: the worker and the operator
// commands. Run returns an error instead of exiting, so tests drive it directly;
// cmd/portal-domains turns that error into an exit code, and
// cmd/portal-domains-dev adds its own commands (dev, bench) through Extra.
package cli

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

// Main runs the command line of os.Args until SIGINT or SIGTERM and exits with
// the command's code: what a binary's main does.
func Main(extra ...Command) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr, extra...)
	stop()
	os.Exit(ExitCode(err, os.Stderr))
}

// Command is a subcommand a binary adds to the product's own.
type Command struct {
	Name  string
	Usage string // one line for the usage text, after the name
	Run   func(e *Env, args []string) error
}

// usageError is wrong input on the command line or in the environment: the
// command did nothing and exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// AsUsage marks err as wrong input: the command did nothing and exits 2.
func AsUsage(err error) error { return usageError{err} }

// Usagef is a usage error: the command did nothing and exits 2.
func Usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// errSilent is returned after the command already printed its failure
// (doctor's ✗ lines): exit 1 without another message.
var errSilent = errors.New("")

// ExitCode prints err (one line) and gives the exit code: 0 done, 1 failed,
// 2 wrong input.
func ExitCode(err error, stderr io.Writer) int {
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

Usage: %[1]s <command> [flags]

Commands:
  worker     run the worker (River queues, certificate watch, /healthz, /readyz, /metrics, River UI)
  migrate    up | down [--steps N] | status: the portal_domains schema and River's tables
  register   --tenant T --domain D: register (or change) a tenant's portal domain
  refresh    --tenant T --domain-id ID: force-reconcile a domain that is in progress
  retry      --tenant T --domain-id ID: start a failed domain over
  disable    --tenant T --domain-id ID: disable a domain and delete its objects
  status     [--tenant T | --domain-id ID | --status S] [--json]: domains as a table
  doctor     D | --domain D | --domain-id ID [--json]: walk a domain's chain (row, jobs, DNS, CAA, objects, certificate, issuance, HTTPS, alerts) and say what to do next
  render     --domain-id ID: print the Kubernetes objects of a domain without applying them
  ui         serve the River UI alone
  alerts     [--all] [--json]: open stuck-certificate alerts
  sweep      [--dry-run] [--json]: delete (or list) this installation's orphaned objects once
  adopt      [--dry-run] [--json]: claim objects without an installation id whose domain is in this database
%[2]s
Configuration is read from the environment; see README.md.
`

// Run runs one command line. extra adds commands to the product's own (the
// dev binary's); a name of the product's cannot be replaced.
func Run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer, extra ...Command) error {
	env := &Env{Ctx: ctx, Getenv: getenv, Stdin: stdin, Stdout: stdout, Stderr: stderr}
	if len(args) == 0 {
		env.usage(stderr, extra)
		return Usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "--help":
		env.usage(stdout, extra)
		return nil
	case "worker":
		return env.worker(rest)
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
	case "sweep":
		return env.sweep(rest)
	case "adopt":
		return env.adopt(rest)
	}
	for _, c := range extra {
		if c.Name == cmd {
			return c.Run(env, rest)
		}
	}
	env.usage(stderr, extra)
	return Usagef("unknown command %q", cmd)
}

func (e *Env) usage(w io.Writer, extra []Command) {
	var more strings.Builder
	for _, c := range extra {
		fmt.Fprintf(&more, "  %-10s %s\n", c.Name, c.Usage)
	}
	name := "portal-domains"
	if len(extra) > 0 {
		name = "portal-domains-dev"
	}
	fmt.Fprintf(w, usageText, name, more.String())
}

// Env is what every command gets: no globals.
type Env struct {
	Ctx    context.Context
	Getenv func(string) string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}
