package engine

import (
	"errors"
	"testing"
)

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, name string
		match         bool
	}{
		{"*", "", true},
		{"*", "a/b.c", true},
		{"a*", "abc", true},
		{"a*", "ba", false},
		{"*c", "abc", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"sensor/*/temp", "sensor/1/temp", true},
		{"sensor/*/temp", "sensor/1/2/temp", true},
		{"sensor/*/temp", "sensor/1/tempx", false},
		{"v[0-3]", "v2", true},
		{"v[0-3]", "v4", false},
		{"v[!0-3]", "v4", true},
		{"v[!0-3]", "v1", false},
		{"v[abc]", "vb", true},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{"*a*b*", "xxaxxbxx", true},
		{"*a*b*", "xxbxxaxx", false},
		{"ä?", "äö", true},
		{"abc", "abcd", false},
	}
	for _, tc := range cases {
		t.Run(tc.pattern+"~"+tc.name, func(t *testing.T) {
			g, err := CompileGlob(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if got := g.Match(tc.name); got != tc.match {
				t.Fatalf("Match(%q) = %v, want %v", tc.name, got, tc.match)
			}
		})
	}
}

func TestBadGlobs(t *testing.T) {
	for _, p := range []string{"a[b", "[]", "[!]", `a\`, "a]"} {
		t.Run(p, func(t *testing.T) {
			if _, err := CompileGlob(p); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("CompileGlob(%q) = %v, want invalid argument", p, err)
			}
		})
	}
}
