package clientlint

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// clientTrees are the client code the check reads, relative to the
// repository root: everything but tests and generated code.
var clientTrees = []struct {
	dir, ext string
}{
	{"grpcapi/client", ".go"},
	{"internal/cli", ".go"},
	{"clients/python/varwatch", ".py"},
}

// A message matcher is code that reads an error's text to decide
// something: a substring, prefix or regexp test, or a comparison, of a
// message, an err.Error(), a status's Message() or grpc's details().
// Printing a message, or storing it, is not matching it.
var (
	// msgExpr is an expression holding an error's text; names is
	// replaced by the names that hold one (msgNames, plus the file's
	// aliases).
	msgExpr  = `(?:\.Message\(\)|\.Error\(\)|\.details\(\)|\bstr\((?:e|err|exc|error)\)|\b(?:e|err|exc|error|self|info|st|s|res\.error)\.message\b|\b(?:names)\b)`
	msgNames = []string{"msg", "message", "lower", "desc", "details"}
	// alias is an assignment of a message to a local name: m = err.message.
	alias = `^\s*(\w+)\s*(?::=|=)\s*[^=].*`
	// The matching, for Go and for Python, with %[1]s for msgExpr.
	goPatterns = []string{
		// strings.Contains(s.Message(), "x"), strings.HasPrefix(msg, ...)
		`strings\.(?:Contains\w*|HasPrefix|HasSuffix|Index\w*|EqualFold|Cut\w*|TrimPrefix|Count|Split\w*)\([^;{]*%[1]s`,
		// err.Error() == "x", "x" != s.Message()
		`%[1]s\s*(?:==|!=)|(?:==|!=)\s*[\w.]*%[1]s`,
		// regexp.MustCompile(...).FindString(msg), re.MatchString(err.Error())
		`\.(?:Match\w*|Find\w*)\([^;{]*%[1]s`,
	}
	pyPatterns = []string{
		// "no variable" in message, 'behind' not in str(e)
		`["'][^"']*["']\s+(?:not\s+)?in\s+%[1]s`,
		// re.search(r"current version is (\d+)", message), _RE.match(e.message)
		`\b(?:re\.\w+|\.(?:search|match|fullmatch|findall|finditer))\([^#]*%[1]s`,
		// message.startswith("x"), e.details().lower(), msg == "x"
		`%[1]s\s*(?:\.(?:startswith|endswith|find|index|count|lower|upper|casefold|split)\(|==|!=)`,
	}
)

// checker matches the lines of one file.
type checker struct {
	ext      string
	aliases  []string
	patterns []*regexp.Regexp
	alias    *regexp.Regexp
}

func newChecker(ext string) *checker {
	c := &checker{ext: ext}
	c.compile()
	return c
}

// compile builds the patterns with the names known so far.
func (c *checker) compile() {
	expr := strings.Replace(msgExpr, "names", strings.Join(append(append([]string(nil), msgNames...), c.aliases...), "|"), 1)
	src := goPatterns
	if c.ext == ".py" {
		src = pyPatterns
	}
	c.patterns = c.patterns[:0]
	for _, p := range src {
		c.patterns = append(c.patterns, regexp.MustCompile(fmt.Sprintf(p, expr)))
	}
	// Not ".lower()": a name, not a method, holds a message.
	c.alias = regexp.MustCompile(alias + strings.Replace(expr, `|\b(?:msg|`, `|(?:^|[^.\w])(?:msg|`, 1))
}

// TestClientsDoNotMatchMessages fails on any line of client code that
// matches an error's message text.
func TestClientsDoNotMatchMessages(t *testing.T) {
	root := filepath.Join("..", "..")
	files := 0
	for _, tree := range clientTrees {
		err := filepath.WalkDir(filepath.Join(root, tree.dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			switch {
			case d.IsDir() && (name == "_proto" || name == "__pycache__" || name == "testdata"):
				return filepath.SkipDir
			case d.IsDir() || filepath.Ext(name) != tree.ext:
				return nil
			case strings.HasSuffix(name, "_test.go"), strings.HasSuffix(name, ".pb.go"):
				return nil
			}
			files++
			for _, hit := range messageMatches(t, path, tree.ext) {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s:%d matches an error's message text; decide by its code and ErrorInfo reason instead:\n\t%s", rel, hit.line, hit.text)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files < 20 {
		t.Fatalf("read %d client files: the trees moved?", files)
	}
}

func (c *checker) isAlias(code string) (string, bool) {
	m := c.alias.FindStringSubmatch(code)
	if m == nil {
		return "", false
	}
	return m[1], true
}

type hit struct {
	line int
	text string
}

// messageMatches are the lines of the file at path that match messages.
// Comment lines are skipped: they may quote a message to explain code.
func messageMatches(t *testing.T, path, ext string) []hit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hits []hit
	c := newChecker(ext)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		if line := sc.Text(); c.matches(line) {
			hits = append(hits, hit{n, strings.TrimSpace(line)})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return hits
}

// matches reports whether one line of code matches an error's message.
// A line that assigns a message to a name makes the name one to watch in
// the lines after it.
func (c *checker) matches(line string) bool {
	code := strings.TrimSpace(line)
	if strings.HasPrefix(code, "//") || strings.HasPrefix(code, "#") {
		return false
	}
	for _, re := range c.patterns {
		if re.MatchString(code) {
			return true
		}
	}
	if name, ok := c.isAlias(code); ok && !slices.Contains(c.aliases, name) && !slices.Contains(msgNames, name) {
		c.aliases = append(c.aliases, name)
		c.compile()
	}
	return false
}

// TestMatchersCatchWhatClientsDid: the patterns flag the message matching
// the clients used to do (each line as it was), and pass the code that
// only prints or stores a message.
func TestMatchersCatchWhatClientsDid(t *testing.T) {
	for _, tc := range []struct {
		ext, line string
		flagged   bool
	}{
		// Once in clients/python/varwatch/_resume.py: the alias m.
		{".py", "        m = err.message\n        return \"RST_STREAM\" in m or \"Stream removed\" in m", true},
		// Once in clients/python/varwatch/errors.py and _resume.py.
		{".py", `        if "no variable" in lower or "variable not found" in lower:`, true},
		{".py", `        if "behind" in lower or "slow consumer" in lower or "cut off" in lower:`, true},
		{".py", `        self.current_version = _int_after(message, r"current version is (-?\d+)")`, false}, // its helper is flagged:
		{".py", `        m = re.search(pattern, message)`, true},
		{".py", `    m = _WRONG_TYPE.search(message)`, true},
		{".py", `            "RST_STREAM" in m or "Stream removed" in m`, false}, // m is no message here
		{".py", `        m = err.message`, false},
		{".py", `        return "RST_STREAM" in err.message`, true},
		{".py", `    if "already exists" in str(e):`, true},
		{".py", `    if e.details().startswith("server is shutting down"):`, true},
		{".py", `    if msg == "invalid token":`, true},
		// Fine: storing and printing.
		{".py", `        self.message = message`, false},
		{".py", `        return f"{self.code.name}: {self.message}"`, false},
		{".py", `    message = details_fn() if callable(details_fn) else None`, false},
		{".py", `        return Pong(r.message, _opt_dt(r, "server_time"))`, false},
		{".py", `    # the server's "no variable" in message meant ...`, false},
		// Go.
		{".go", `	if strings.HasPrefix(s.Message(), "server is shutting down") {`, true},
		{".go", `	if strings.Contains(err.Error(), "not found") {`, true},
		{".go", `	case strings.Contains(msg, "behind"):`, true},
		{".go", `	if status.Convert(err).Message() == "watch cancelled" {`, true},
		{".go", `	m := resumeRE.FindStringSubmatch(st.Message())`, true},
		// Fine.
		{".go", `	msg := codeName(s.Code()) + ": " + s.Message()`, false},
		{".go", `	if strings.Contains(server, ":/") || strings.HasPrefix(server, "unix:") {`, false},
		{".go", `		return &usageError{msg: err.Error(), usage: usage, cmd: c.name}`, false},
		{".go", `	// strings.Contains(err.Error(), "x") is what this package never does`, false},
		{".go", `	for len(args) > 0 && strings.HasPrefix(args[0], "-") {`, false},
	} {
		c := newChecker(tc.ext)
		got := false
		for _, line := range strings.Split(tc.line, "\n") {
			got = c.matches(line) || got
		}
		if got != tc.flagged {
			t.Errorf("%s line %q: flagged %v, want %v", tc.ext, tc.line, got, tc.flagged)
		}
	}
}
