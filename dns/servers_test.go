package dns

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseServers(t *testing.T) {
	t.Parallel()

	t.Run("accepts the documented forms and adds port 53", func(t *testing.T) {
		t.Parallel()
		for in, want := range map[string][]string{
			"1.1.1.1":                        {"1.1.1.1:53"},
			"1.1.1.1:5353":                   {"1.1.1.1:5353"},
			"1.1.1.1,8.8.8.8":                {"1.1.1.1:53", "8.8.8.8:53"},
			" 1.1.1.1 , 8.8.8.8:54 9.9.9.9 ": {"1.1.1.1:53", "8.8.8.8:54", "9.9.9.9:53"},
			"1.1.1.1\t8.8.8.8\n":             {"1.1.1.1:53", "8.8.8.8:53"},
			"[::1]:5353":                     {"[::1]:5353"},
			"[::1]":                          {"[::1]:53"},
			"::1":                            {"[::1]:53"},
			"2001:DB8::53":                   {"[2001:db8::53]:53"},
			"[fe80::1%eth0]:53":              {"[fe80::1%eth0]:53"},
			"kube-dns.kube-system.svc.cluster.local:53": {"kube-dns.kube-system.svc.cluster.local:53"},
			"LocalHost":                {"localhost:53"},
			"1.1.1.1, 1.1.1.1:53":      {"1.1.1.1:53"},
			"127.0.0.1:053":            {"127.0.0.1:53"},
			"[::ffff:192.0.2.1]:65535": {"[::ffff:192.0.2.1]:65535"},
		} {
			got, err := ParseServers(in)
			require.NoError(t, err, in)
			require.Equal(t, want, got, in)
		}
	})

	t.Run("names the bad entry", func(t *testing.T) {
		t.Parallel()
		for in, want := range map[string]string{
			"":                  "no servers",
			"  \t ":             "no servers",
			"1.1.1.1,,8.8.8.8":  "entry 2 is empty",
			"1.1.1.1,":          "entry 2 is empty",
			",1.1.1.1":          "entry 1 is empty",
			"1.1.1.1:0":         `port "0"`,
			"1.1.1.1:65536":     `port "65536"`,
			"1.1.1.1:dns":       `port "dns"`,
			"1.1.1.1:":          `port ""`,
			"1.1.1.1:+53":       `port "+53"`,
			"1.1.1.1 :53":       `entry 2 ":53"`,
			"256.1.1.1":         "not a valid IPv4 address",
			"1.2.3":             "not a valid IPv4 address",
			"[::1":              "missing closing bracket",
			"[1.2.3.4]:53":      "not an IPv6 address",
			"[::1]53":           "unexpected",
			"[::1]:99999":       `port "99999"`,
			"::1:53:x":          "not a valid IPv6 address",
			"dns_server!:53":    "neither an IP address nor a host name",
			"8.8.8.8, http://x": `entry 2 "http://x"`,
			"1.1.1.1;8.8.8.8":   "entry 1",
		} {
			_, err := ParseServers(in)
			require.ErrorIs(t, err, ErrBadServer, in)
			require.ErrorContains(t, err, want, in)
		}
	})
}

// FuzzParseServers checks that ParseServers never panics and that what it
// accepts is dialable and stable: every address splits into a host and a
// port in range, and parsing the output again gives the output.
func FuzzParseServers(f *testing.F) {
	for _, seed := range []string{
		"1.1.1.1", "1.1.1.1:53,8.8.8.8", "[::1]:5353", "::1", "[fe80::1%eth0]", "a.b:1", ",", "1.1.1.1,,", "[", "]:53",
		"[::1]:", "host:65535", "::ffff:1.2.3.4", "1.1.1.1 2.2.2.2\t[::2]", "%", "[fe80::1%]]:53",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseServers(in)
		if err != nil {
			require.ErrorIs(t, err, ErrBadServer)
			return
		}
		require.NotEmpty(t, got)
		for _, addr := range got {
			host, port, err := net.SplitHostPort(addr)
			require.NoError(t, err, addr)
			require.NotEmpty(t, host)
			n, err := strconv.Atoi(port)
			require.NoError(t, err)
			require.True(t, n >= 1 && n <= 65535, addr)
			require.False(t, strings.ContainsAny(addr, ", \t\n"), addr)
		}
		again, err := ParseServers(strings.Join(got, ","))
		require.NoError(t, err, "output %q must parse again", got)
		require.Equal(t, got, again)
	})
}

func TestServersFromResolvConf(t *testing.T) {
	t.Parallel()

	write := func(t *testing.T, content string) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), "resolv.conf")
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		return path
	}

	t.Run("reads nameserver lines in order", func(t *testing.T) {
		t.Parallel()
		path := write(t, "# generated\nsearch svc.cluster.local\nnameserver 10.96.0.10\nnameserver ::1\noptions ndots:5\n")
		got, err := ServersFromResolvConf(path)
		require.NoError(t, err)
		require.Equal(t, []string{"10.96.0.10:53", "[::1]:53"}, got)
	})

	t.Run("fails without nameservers", func(t *testing.T) {
		t.Parallel()
		_, err := ServersFromResolvConf(write(t, "search example.test\n"))
		require.ErrorIs(t, err, ErrBadServer)
		require.ErrorContains(t, err, "no nameserver line")
	})

	t.Run("fails on a nameserver that is not an IP", func(t *testing.T) {
		t.Parallel()
		_, err := ServersFromResolvConf(write(t, "nameserver dns.example.test\n"))
		require.ErrorIs(t, err, ErrBadServer)
		require.ErrorContains(t, err, `"dns.example.test"`)
	})

	t.Run("fails on a missing file", func(t *testing.T) {
		t.Parallel()
		_, err := ServersFromResolvConf(filepath.Join(t.TempDir(), "nope"))
		require.ErrorIs(t, err, os.ErrNotExist)
	})
}
