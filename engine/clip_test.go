package engine

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestErrorfClipsLongArguments(t *testing.T) {
	cases := []struct {
		name   string
		format string
		arg    any
		want   string
	}{
		{"short string stays", "id %q", "abc", `engine: invalid argument: id "abc"`},
		{"long string, %q", "id %q", strings.Repeat("a", 1000),
			`engine: invalid argument: id "` + strings.Repeat("a", MaxQuoted) + `"…(1000 bytes)`},
		{"long string, %s", "id %s", strings.Repeat("b", 200),
			`engine: invalid argument: id ` + strings.Repeat("b", MaxQuoted) + `…(200 bytes)`},
		{"cut at a rune boundary", "id %q", strings.Repeat("é", 100), // 200 bytes
			`engine: invalid argument: id "` + strings.Repeat("é", MaxQuoted/2) + `"…(200 bytes)`},
		{"long value", "value %s", String(strings.Repeat("v", 500)),
			`engine: invalid argument: value "` + strings.Repeat("v", MaxQuoted-1) + `…(502 bytes)`},
		{"numbers pass", "%d bytes", 1 << 20, `engine: invalid argument: 1048576 bytes`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := errorf(ErrInvalidArgument, tc.format, tc.arg)
			if got := err.Error(); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			if !errors.Is(err, ErrInvalidArgument) || !utf8.ValidString(err.Error()) {
				t.Fatalf("%v: kind lost or invalid UTF-8", err)
			}
		})
	}
}
