package engine

import "unicode/utf8"

// Glob is a compiled name pattern: '*' matches any run of characters
// (including '/' and '.'), '?' exactly one character, '[abc]', '[a-z]' and
// '[!a-z]' one character of (or not of) a class, and '\' escapes the next
// character. A glob is anchored: it must match the whole name.
type Glob struct {
	pattern string
}

// maxGlobLen bounds patterns so matching stays cheap.
const maxGlobLen = 1024

// CompileGlob checks pattern and returns its Glob, or ErrInvalidArgument
// naming what is malformed.
func CompileGlob(pattern string) (Glob, error) {
	if len(pattern) > maxGlobLen {
		return Glob{}, errorf(ErrInvalidArgument, "glob is %d bytes long (limit %d)", len(pattern), maxGlobLen)
	}
	if !utf8.ValidString(pattern) {
		return Glob{}, errorf(ErrInvalidArgument, "glob %q is not valid UTF-8", pattern)
	}
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '\\':
			if i+1 == len(pattern) {
				return Glob{}, errorf(ErrInvalidArgument, "glob %q ends with a lone '\\'", pattern)
			}
			i++
		case '[':
			end, ok := classEnd(pattern, i)
			if !ok {
				return Glob{}, errorf(ErrInvalidArgument, "glob %q has an unterminated or empty '[' class", pattern)
			}
			i = end
		case ']':
			return Glob{}, errorf(ErrInvalidArgument, "glob %q has a ']' without '['", pattern)
		}
	}
	return Glob{pattern: pattern}, nil
}

// classEnd returns the index of the ']' closing the class opened at
// pattern[open], and whether the class is well formed and non-empty.
func classEnd(pattern string, open int) (int, bool) {
	i := open + 1
	if i < len(pattern) && pattern[i] == '!' {
		i++
	}
	start := i
	for ; i < len(pattern); i++ {
		switch pattern[i] {
		case '\\':
			i++
		case ']':
			return i, i > start
		}
	}
	return 0, false
}

// String returns the source pattern.
func (g Glob) String() string { return g.pattern }

// Match reports whether name matches the whole glob.
func (g Glob) Match(name string) bool {
	if g.pattern == "*" { // the whole-session watch, the most common one
		return true
	}
	return globMatch(g.pattern, name)
}

// cost bounds the steps Match takes on name: the backtracking matcher may
// retry the pattern from every position of the name.
func (g Glob) cost(name string) int {
	if g.pattern == "*" {
		return 0
	}
	return (len(g.pattern) + 1) * (len(name) + 1)
}

// globMatch matches with backtracking to the last '*' only, which keeps it
// linear in practice (the classic wildcard algorithm).
func globMatch(p, s string) bool {
	starP, starS := -1, 0
	pi, si := 0, 0
	for si < len(s) {
		if pi < len(p) {
			switch p[pi] {
			case '*':
				starP, starS = pi, si
				pi++
				continue
			default:
				if n, w, ok := matchOne(p, pi, s, si); ok {
					pi, si = n, si+w
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		_, w := utf8.DecodeRuneInString(s[starS:])
		starS += w
		pi, si = starP+1, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// matchOne matches the single-character element at p[pi] against the rune
// at s[si]; it returns the next pattern index and the rune's width.
func matchOne(p string, pi int, s string, si int) (next, width int, ok bool) {
	r, w := utf8.DecodeRuneInString(s[si:])
	switch p[pi] {
	case '?':
		return pi + 1, w, true
	case '[':
		end, _ := classEnd(p, pi)
		return end + 1, w, classMatch(p[pi+1:end], r)
	case '\\':
		pi++
	}
	pr, pw := utf8.DecodeRuneInString(p[pi:])
	return pi + pw, w, pr == r
}

func classMatch(class string, r rune) bool {
	negate := class != "" && class[0] == '!'
	if negate {
		class = class[1:]
	}
	matched := false
	for i := 0; i < len(class); {
		lo, w := classRune(class, i)
		i += w
		hi := lo
		if i+1 < len(class) && class[i] == '-' {
			hi, w = classRune(class, i+1)
			i += 1 + w
		}
		if lo <= r && r <= hi {
			matched = true
		}
	}
	return matched != negate
}

func classRune(class string, i int) (rune, int) {
	if class[i] == '\\' && i+1 < len(class) {
		r, w := utf8.DecodeRuneInString(class[i+1:])
		return r, w + 1
	}
	return utf8.DecodeRuneInString(class[i:])
}
