package cli

// The settings tables are tested here because this package is where the
// product binary hands the environment to every reader of settings (worker,
// server, telemetry, analytics), and its tests already run from the module.

import (
	"bufio"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// settingName is what an environment variable of this project, or one of the
// standard ones it reads, looks like.
var settingName = regexp.MustCompile(`^(PORTAL_DOMAIN_[A-Z0-9_]+|DATABASE_URL|TEST_DATABASE_URL|KUBECONFIG|KUBEBUILDER_ASSETS|LOG_LEVEL|OTEL_[A-Z0-9_]+|POSTHOG_[A-Z0-9_]+|GITHUB_ACCESS_TOKEN)$`)

// TestSettingsTablesMatchCode keeps the README's settings table equal to the
// settings the product binary reads, and docs/development.md's table equal to
// those only the dev binary, the harnesses and the tests read.
//
// What the code reads is found, not listed: a Go string literal that is
// exactly a setting's name is how the code reads one (getenv("NAME"), a
// constant handed to getenv, or a table of names and defaults); a message
// that mentions a name is never exactly the name. The product's literals come
// from the non-test files of every package cmd/portal-domains links; the rest
// of the module's files (harnesses, cmd/portal-domains-dev, test helpers and
// tests) give the development settings.
func TestSettingsTablesMatchCode(t *testing.T) {
	t.Parallel()
	root := moduleRoot(t)
	modPath := modulePath(t, root)

	product := map[string]bool{}
	for _, file := range productFiles(t, root, modPath, "cmd/portal-domains") {
		collectSettings(t, file, product)
	}
	every := map[string]bool{}
	for _, file := range moduleFiles(t, root) {
		collectSettings(t, file, every)
	}
	devOnly := map[string]bool{}
	for name := range every {
		if !product[name] {
			devOnly[name] = true
		}
	}
	require.NotEmpty(t, product, "found no settings in the product's code: the scan is broken")

	t.Run("README lists every setting the product reads, and no other", func(t *testing.T) {
		table := tableSettings(t, filepath.Join(root, "README.md"), "## Settings")
		assert.Empty(t, missing(product, table), "read by the product but missing from README.md's settings table")
		assert.Empty(t, missing(table, product), "in README.md's settings table but not read by the product (cmd/portal-domains)")
	})
	t.Run("docs/development.md lists every setting only development reads, and no other", func(t *testing.T) {
		table := tableSettings(t, filepath.Join(root, "docs", "development.md"), "## Settings for development and tests")
		assert.Empty(t, missing(devOnly, table), "read only by the dev binary, harnesses or tests, but missing from docs/development.md's table")
		assert.Empty(t, missing(table, devOnly), "in docs/development.md's table but not read outside the product (or read by the product: put it in the README)")
	})
}

// missing returns the names of want that got lacks, sorted.
func missing(want, got map[string]bool) []string {
	var out []string
	for name := range want {
		if !got[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "no go.mod above the test's directory")
		dir = parent
	}
}

func modulePath(t *testing.T, root string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatal("go.mod has no module line")
	return ""
}

// productFiles returns the non-test Go files of the module's packages that
// the command in dir links, following imports within the module.
func productFiles(t *testing.T, root, modPath, dir string) []string {
	t.Helper()
	var files []string
	seen := map[string]bool{}
	var visit func(rel string)
	visit = func(rel string) {
		if seen[rel] {
			return
		}
		seen[rel] = true
		abs := filepath.Join(root, filepath.FromSlash(rel))
		pkg, err := build.Default.ImportDir(abs, 0)
		require.NoError(t, err, "read package %s", rel)
		for _, f := range pkg.GoFiles {
			files = append(files, filepath.Join(abs, f))
		}
		for _, imp := range pkg.Imports {
			if sub, ok := strings.CutPrefix(imp, modPath+"/"); ok {
				visit(sub)
			}
		}
	}
	visit(dir)
	require.Greater(t, len(seen), 5, "cmd/portal-domains links fewer of the module's packages than expected")
	return files
}

// moduleFiles returns every Go file of the module, tests included, leaving out
// the separate modules under tools/ and the caches.
func moduleFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") {
			files = append(files, path)
		}
		return nil
	})
	require.NoError(t, err)
	return files
}

// collectSettings adds the string literals of file that are setting names.
func collectSettings(t *testing.T, file string, into map[string]bool) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	require.NoError(t, err)
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		if s, err := strconv.Unquote(lit.Value); err == nil && settingName.MatchString(s) {
			into[s] = true
		}
		return true
	})
}

// tableSettings returns the names in the first column of the Markdown table
// under heading (a line equal to it): every `NAME` in that cell counts, so a
// row may name several settings that share a meaning.
func tableSettings(t *testing.T, path, heading string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")
	names := map[string]bool{}
	inSection, inTable := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == heading:
			inSection = true
		case !inSection:
		case strings.HasPrefix(line, "#"):
			inSection = false
		case strings.HasPrefix(line, "|"):
			inTable = true
			cells := strings.Split(line, "|")
			if len(cells) < 3 || strings.Trim(cells[1], " -:") == "" {
				continue // the separator row
			}
			for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
				require.False(t, names[m[1]], "%s lists %s twice", path, m[1])
				names[m[1]] = true
			}
		case inTable:
			inSection = false // one table per section
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, names, "%s has no settings table under %q", path, heading)
	return names
}
