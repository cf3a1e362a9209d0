package db_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/portal-domains/portal-domains/db"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://app:s3cret@db.internal:5432/portal?sslmode=require", "postgres://app:xxxxx@db.internal:5432/portal?sslmode=require"},
		{"postgres://postgres@127.0.0.1:5432/portal_domains", "postgres://postgres@127.0.0.1:5432/portal_domains"},
		{"postgresql://db.internal/portal?user=app&password=s3cret&sslmode=disable", "postgresql://db.internal/portal?user=app&password=xxxxx&sslmode=disable"},
		{"postgres://db/portal?PassWord=s3cret", "postgres://db/portal?PassWord=xxxxx"},
		{"postgres://db/portal?sslpassword=s3cret", "postgres://db/portal?sslpassword=xxxxx"},
		{"postgres://app:p%40ss@db/portal", "postgres://app:xxxxx@db/portal"},
		{"host=db.internal user=app password=s3cret dbname=portal", "host=db.internal user=app password=xxxxx dbname=portal"},
		{"host=db password = 's3 cr\\'et' dbname=portal", "host=db password=xxxxx dbname=portal"},
		{"host=db password=s3\\ cret", "host=db password=xxxxx"},
		{"host=db password='unterminated", "(unparsable connection string)"},
		{"not a connection string password", "(unparsable connection string)"},
	} {
		require.Equal(t, tc.want, db.RedactURL(tc.in), tc.in)
	}
}

// FuzzRedactURL builds every form of connection string around a password
// and checks that pgx reads that password from it and RedactURL's answer
// holds neither the password nor its escaped form.
func FuzzRedactURL(f *testing.F) {
	for _, seed := range []string{"s3cret", "p@ss/w:rd?#&=", "quote'back\\slash", "with space", "%41", "a", "passwordpassword"} {
		f.Add(seed, uint8(0))
	}
	f.Fuzz(func(t *testing.T, secret string, form uint8) {
		if strings.ContainsRune(secret, 0) || !strings.Contains(strings.ToValidUTF8(secret, ""), secret) {
			return // not a password: Postgres passwords are valid UTF-8 without NUL
		}
		pw := "Zq" + secret + "Zq" // long enough not to occur in the rest by chance
		kvQuoted := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw) + "'"
		forms := []string{
			"postgres://" + url.UserPassword("app", pw).String() + "@db.internal:5432/portal?sslmode=disable",
			"postgres://app@db.internal/portal?password=" + strings.ReplaceAll(url.QueryEscape(pw), "+", "%20") + "&sslmode=disable",
			"host=db.internal user=app password=" + kvQuoted + " dbname=portal",
			"host=db.internal user=app password = " + kvQuoted,
			"host=db.internal password=" + strings.NewReplacer(`\`, `\\`, ` `, `\ `, "\t", "\\\t", "\n", "\\\n", "\r", "\\\r", "\f", "\\\f", "\v", "\\\v").Replace(pw) + " dbname=portal",
		}
		conn := forms[int(form)%len(forms)]
		if cfg, err := pgconn.ParseConfig(conn); err == nil {
			require.Equal(t, pw, cfg.Password, "the test's own connection string %q", conn)
		}
		out := db.RedactURL(conn)
		for _, leak := range []string{pw, url.QueryEscape(pw), url.PathEscape(pw), kvQuoted} {
			require.NotContains(t, out, leak, "from %q", conn)
		}
	})
}
