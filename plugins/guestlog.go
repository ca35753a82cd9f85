package plugins

import (
	"bytes"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Bounds of guest output handling: a plugin that prints in a loop must not
// flood the log or grow host memory.
const (
	maxLineBytes  = 512
	maxTailBytes  = 512
	maxGuestLines = 100
)

// guestLog receives a plugin instance's stdout and stderr. It logs whole
// lines at Warn (a Go plugin's panic message and stack arrive here before
// the guest aborts), and keeps the Go runtime's first "panic:" or "fatal
// error:" line and the last bytes for fault messages and classification.
//
// # Notes
//
// Owned by the goroutine calling into the instance: wazero calls Write
// synchronously from fd_write, and an instance is never called from two
// goroutines at once.
type guestLog struct {
	log   hclog.Logger
	line  []byte
	last  []byte
	lines int
	// headline is the first line that starts with "panic: " or "fatal
	// error: ", as the Go runtime writes them.
	headline string
}

func newGuestLog(log hclog.Logger) *guestLog { return &guestLog{log: log} }

func (g *guestLog) Write(p []byte) (int, error) {
	g.last = append(g.last, p...)
	if len(g.last) > 2*maxTailBytes {
		g.last = append(g.last[:0], g.last[len(g.last)-maxTailBytes:]...)
	}
	for _, c := range p {
		if c == '\n' {
			g.flush()
			continue
		}
		if len(g.line) < maxLineBytes {
			g.line = append(g.line, c)
		}
	}
	return len(p), nil
}

func (g *guestLog) flush() {
	if len(g.line) == 0 {
		return
	}
	g.lines++
	if g.headline == "" && (bytes.HasPrefix(g.line, []byte("panic: ")) || bytes.HasPrefix(g.line, []byte("fatal error: "))) {
		g.headline = string(g.line)
	}
	switch {
	case g.lines < maxGuestLines:
		g.log.Warn("guest output", "line", string(g.line))
	case g.lines == maxGuestLines:
		g.log.Warn("guest output: further lines from this instance are not logged")
	}
	g.line = g.line[:0]
}

// summary returns what best explains a fault: the Go runtime's headline, or
// else the end of what the guest printed, on one line.
func (g *guestLog) summary() string {
	if g.headline != "" {
		return g.headline
	}
	t := g.last
	if len(t) > maxTailBytes {
		t = t[len(t)-maxTailBytes:]
	}
	return strings.Join(strings.Fields(string(t)), " ")
}
