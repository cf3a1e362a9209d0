package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/internal/cli"
)

func TestDevCommandUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bench unknown row", []string{"bench", "-rows", "2,9"}, `"9" is not a row`},
		{"bench unknown issuer", []string{"bench", "-issuer", "letsencrypt"}, `-issuer "letsencrypt" is not dev or acme`},
		{"bench no rate", []string{"bench", "-rate", "0"}, "-rate 0 is not above 0"},
		{"bench too many domains", []string{"bench", "-n", "20001"}, "is not from 1 to 20000"},
		{"bench too many domains for the scale row", []string{"bench", "-rows", "8", "-n", "100001"}, "is not from 1 to 100000"},
		{"bench no rounds", []string{"bench", "-rounds", "0"}, "-rounds 0 is not from 1 to 20"},
		{"dev unknown flag", []string{"dev", "--nope"}, "flag provided but not defined"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			// No database that exists: usage errors must not need one.
			env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/nothing"}
			err := cli.Run(context.Background(), tc.args, func(k string) string { return env[k] },
				strings.NewReader(""), &stdout, &stderr, devCommands()...)
			require.Equal(t, 2, cli.ExitCode(err, &stderr), stderr.String())
			require.Contains(t, stderr.String(), tc.want)
		})
	}
	t.Run("help lists the product's commands and the dev ones", func(t *testing.T) {
		var stdout bytes.Buffer
		err := cli.Run(context.Background(), []string{"help"}, func(string) string { return "" },
			strings.NewReader(""), &stdout, &bytes.Buffer{}, devCommands()...)
		require.NoError(t, err)
		for _, name := range []string{"worker", "status", "doctor", "dev", "bench"} {
			require.Contains(t, stdout.String(), "\n  "+name+" ")
		}
		require.Contains(t, stdout.String(), "Usage: portal-domains-dev <command>")
	})
}
