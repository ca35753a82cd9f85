package engine

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzGlob compiles and matches arbitrary patterns and names and checks
// them against refGlob, an independent matcher written from CompileGlob's
// documentation: both agree on which patterns are well formed and on
// which names they match. A pattern without metacharacters matches exactly
// itself, and escaping every metacharacter of a name gives a pattern that
// matches exactly that name.
//
// Run it with: go test -run '^$' -fuzz '^FuzzGlob$' -fuzztime 60s ./engine/
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{
		{"*", "a/b.c"},
		{"sensor/*/temp", "sensor/1/2/temp"},
		{"v[!0-3]", "v4"},
		{`a\*`, "a*"},
		{"*a*b*", "xxbxxaxx"},
		{"[a-]", "-"},
		{"ä?", "äö"},
		{"a[b", "ab"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		g, err := CompileGlob(pattern)
		ref, refErr := parseRefGlob(pattern)
		switch {
		case err != nil && !errors.Is(err, ErrInvalidArgument):
			t.Fatalf("CompileGlob(%q) = %v, want an ErrInvalidArgument", pattern, err)
		case (err == nil) != (refErr == nil):
			t.Fatalf("CompileGlob(%q) error %v, reference error %v", pattern, err, refErr)
		case err == nil:
			if g.String() != pattern {
				t.Fatalf("String() = %q, want %q", g.String(), pattern)
			}
			if got, want := g.Match(name), ref.match(name); got != want {
				t.Fatalf("CompileGlob(%q).Match(%q) = %v, reference says %v", pattern, name, got, want)
			}
		}

		if len(pattern) <= maxGlobLen && utf8.ValidString(pattern) && !strings.ContainsAny(pattern, `*?[]\`) {
			if err != nil {
				t.Fatalf("literal pattern %q does not compile: %v", pattern, err)
			}
			if !g.Match(pattern) {
				t.Fatalf("literal pattern %q does not match itself", pattern)
			}
		}

		quoted := quoteGlob(name)
		if len(quoted) <= maxGlobLen && utf8.ValidString(name) {
			q, err := CompileGlob(quoted)
			if err != nil {
				t.Fatalf("quoted name %q does not compile: %v", quoted, err)
			}
			if !q.Match(name) {
				t.Fatalf("quoted name %q does not match %q", quoted, name)
			}
			if q.Match(name+"x") || (name != "" && q.Match(name[:len(name)-1])) {
				t.Fatalf("quoted name %q matches more than %q", quoted, name)
			}
		}
	})
}

// quoteGlob escapes every metacharacter of s.
func quoteGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// refGlob is a glob parsed into elements, matched by dynamic programming
// over runes: the reference for Glob.
type refGlob []refElem

type refElem struct {
	star, any bool
	lit       rune
	class     *refClass
}

type refClass struct {
	negate bool
	ranges [][2]rune
}

// parseRefGlob parses pattern as CompileGlob documents it: '*', '?',
// '\x', and classes '[...]' / '[!...]' of single runes and lo-hi ranges
// (a '-' first or last is literal, '\' escapes inside too). A class must
// be closed and non-empty; a ']' outside a class and a trailing '\' are
// errors.
func parseRefGlob(pattern string) (refGlob, error) {
	if len(pattern) > maxGlobLen || !utf8.ValidString(pattern) {
		return nil, errors.New("too long or not UTF-8")
	}
	p := []rune(pattern)
	var g refGlob
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '*':
			g = append(g, refElem{star: true})
		case '?':
			g = append(g, refElem{any: true})
		case '\\':
			if i+1 == len(p) {
				return nil, errors.New("trailing backslash")
			}
			i++
			g = append(g, refElem{lit: p[i]})
		case ']':
			return nil, errors.New("']' outside a class")
		case '[':
			c := &refClass{}
			i++
			if i < len(p) && p[i] == '!' {
				c.negate = true
				i++
			}
			// Collect the class's runes, escapes resolved, remembering
			// which were escaped: only an unescaped '-' makes a range.
			type crune struct {
				r       rune
				escaped bool
			}
			var body []crune
			closed := false
			for ; i < len(p); i++ {
				if p[i] == '\\' {
					if i+1 == len(p) {
						break
					}
					i++
					body = append(body, crune{p[i], true})
					continue
				}
				if p[i] == ']' {
					closed = true
					break
				}
				body = append(body, crune{p[i], false})
			}
			if !closed || len(body) == 0 {
				return nil, errors.New("unterminated or empty class")
			}
			for j := 0; j < len(body); j++ {
				lo, hi := body[j].r, body[j].r
				if j+2 < len(body) && body[j+1].r == '-' && !body[j+1].escaped {
					hi = body[j+2].r
					j += 2
				}
				c.ranges = append(c.ranges, [2]rune{lo, hi})
			}
			g = append(g, refElem{class: c})
		default:
			g = append(g, refElem{lit: p[i]})
		}
	}
	return g, nil
}

// match reports whether the whole of name matches. Invalid UTF-8 in name
// reads as one U+FFFD per bad byte, as utf8.DecodeRuneInString does.
func (g refGlob) match(name string) bool {
	s := []rune(name)
	// m[j]: the elements so far match s[:j].
	m := make([]bool, len(s)+1)
	m[0] = true
	for _, e := range g {
		next := make([]bool, len(s)+1)
		for j := range m {
			switch {
			case e.star:
				next[j] = m[j] || (j > 0 && next[j-1])
			case j > 0 && m[j-1]:
				next[j] = e.one(s[j-1])
			}
		}
		m = next
	}
	return m[len(s)]
}

func (e refElem) one(r rune) bool {
	switch {
	case e.any:
		return true
	case e.class != nil:
		in := false
		for _, rg := range e.class.ranges {
			if rg[0] <= r && r <= rg[1] {
				in = true
			}
		}
		return in != e.class.negate
	}
	return e.lit == r
}
