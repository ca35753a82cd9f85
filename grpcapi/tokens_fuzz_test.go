package grpcapi

import (
	"bufio"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseTokens parses arbitrary token files. It checks that
//
//   - nothing panics;
//   - a refusal names its line ("line N: ..."), unless the file holds no
//     token or a line is longer than the scanner takes;
//   - an accepted file holds, read again by a simpler reference, every
//     token with its tenant and every tenant setting as the quota of that
//     tenant (0 read as no limit), whichever of its lines gave it.
//
// Run it with: go test -run '^$' -fuzz '^FuzzParseTokens$' -fuzztime 60s ./grpcapi/
func FuzzParseTokens(f *testing.F) {
	for _, seed := range []string{
		adminToken,
		"# ops\n" + adminToken + "\n" + acmeToken + " tenant=acme\n",
		acmeToken + " tenant=acme max_sessions=100 max_watch_streams=50\n" + acmeToken2 + " tenant=acme max_bytes=0",
		acmeToken + " tenant=acme max_sessions=1\n" + acmeToken2 + " tenant=acme max_sessions=2",
		acmeToken + " max_variables=3 tenant=acme max_variables=3",
		adminToken + " max_sessions=1",
		acmeToken + " tenant=acme max_bytes=-1",
		acmeToken + " tenant=acme " + acmeToken2,
		globexToken + "\ttenant=globex\tmax_watch_streams=18446744073709551616",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, file string) {
		tokens, err := ParseTokens(strings.NewReader(file))
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "line ") && msg != "no tokens" && !errors.Is(err, bufio.ErrTooLong) {
				t.Fatalf("error without its line: %v", err)
			}
			return
		}
		n := 0
		for _, line := range strings.Split(strings.ReplaceAll(file, "\r\n", "\n"), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
				continue
			}
			n++
			tenant := ""
			for _, f := range fields[1:] {
				if v, ok := strings.CutPrefix(f, "tenant="); ok {
					tenant = v
				}
			}
			if got, ok := tokens.lookup(fields[0]); !ok || got != tenant {
				t.Fatalf("token of %q: %q, %v; want tenant %q", line, got, ok, tenant)
			}
			q := tokens.Quota(tenant)
			for _, f := range fields[1:] {
				k, v, _ := strings.Cut(f, "=")
				var got int
				switch k {
				case "tenant":
					continue
				case "max_sessions":
					got = q.MaxSessions
				case "max_variables":
					got = q.MaxVariables
				case "max_bytes":
					got = q.MaxBytes
				case "max_watch_streams":
					got = q.MaxWatchStreams
				default:
					t.Fatalf("accepted %q of line %q", k, line)
				}
				want, err := strconv.Atoi(v)
				if err != nil || want < 0 {
					t.Fatalf("accepted %s=%q", k, v)
				}
				if want == 0 {
					want = -1
				}
				if got != want {
					t.Fatalf("tenant %q: %s is %d, line %q says %s", tenant, k, got, line, v)
				}
			}
		}
		if tokens.Len() != n {
			t.Fatalf("%d tokens, the reference counts %d lines", tokens.Len(), n)
		}
	})
}
