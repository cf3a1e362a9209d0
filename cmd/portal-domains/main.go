// Command portal-domains runs the worker that provisions branded client-portal
// domains, and the operator commands around it (internal/cli).
package main

import "github.com/portal-domains/portal-domains/internal/cli"

func main() { cli.Main() }
