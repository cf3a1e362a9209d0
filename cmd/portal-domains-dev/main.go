// Command portal-domains-dev is the project's own tooling around the product:
// `dev` runs the whole pipeline on this machine (make run) and `bench`
// measures it (make bench). It also answers every portal-domains command, so
// one binary drives a dev stack. Nothing here is linked into portal-domains.
package main

import "github.com/portal-domains/portal-domains/internal/cli"

func main() { cli.Main(devCommands()...) }

func devCommands() []cli.Command {
	return []cli.Command{
		{Name: "dev", Run: devCommand,
			Usage: "run everything on this machine (Postgres, kube-apiserver, DNS, HTTPS, DEV-ONLY issuer, worker, UI) with demo domains"},
		{Name: "bench", Run: benchCommand,
			Usage: "[-n N] [-workers W] [-rounds R] [-rows 2,3] [-json]: measure the pipeline against baselines from the same run, as one table"},
	}
}
