package cli

import (
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/varwatch/varwatch/internal/metrics"
)

// The version comes from the build itself (runtime/debug.ReadBuildInfo),
// not from a constant someone must remember to bump: the module version
// when built with "go install module@version", "(devel)" for a build in a
// checkout, plus the VCS revision, its time and whether the tree had
// uncommitted changes, which go build records in a checkout.

func versionCommand() *command {
	return &command{
		name:    "version",
		summary: "print the version",
		doc: `Prints the module version, the VCS revision it was built from (with
"+dirty" when the tree had uncommitted changes), the commit time and the
Go version: varwatch (devel) rev 35d5689e1f0a+dirty (2026-12-01T20:55:10Z) go1.26.8 linux/amd64.
"varwatch --version" prints the same; serve logs it on its "listening"
line.`,
		nargs: exactly(0),
		setup: func(e *env, _ *flag.FlagSet) func([]string) error {
			return func([]string) error {
				_, err := fmt.Fprintln(e.stdout, versionLine())
				return err
			}
		},
	}
}

// Version is the version of this binary: the module version and, when
// the build recorded one, the VCS revision ("(devel) rev 35d5689e1f0a+dirty").
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return formatVersion(info)
}

// versionLine is what varwatch version prints.
func versionLine() string {
	info, ok := debug.ReadBuildInfo()
	goVersion := runtime.Version()
	v := "unknown"
	if ok {
		v = formatVersion(info)
		if info.GoVersion != "" {
			goVersion = info.GoVersion
		}
		if t := buildSetting(info, "vcs.time"); t != "" {
			v += " (" + t + ")"
		}
	}
	return fmt.Sprintf("varwatch %s %s %s/%s", v, goVersion, runtime.GOOS, runtime.GOARCH)
}

// buildInfo labels the varwatch_build_info metric: the module version,
// the short revision (with "+dirty"), the Go version.
func buildInfo() metrics.BuildInfo {
	b := metrics.BuildInfo{Version: "unknown", GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Version = info.Main.Version
	if b.Version == "" {
		b.Version = "(devel)"
	}
	if info.GoVersion != "" {
		b.GoVersion = info.GoVersion
	}
	b.Revision = buildSetting(info, "vcs.revision")
	if len(b.Revision) > 12 {
		b.Revision = b.Revision[:12]
	}
	if b.Revision != "" && buildSetting(info, "vcs.modified") == "true" {
		b.Revision += "+dirty"
	}
	return b
}

// formatVersion is the module version plus the short VCS revision.
func formatVersion(info *debug.BuildInfo) string {
	v := info.Main.Version
	if v == "" {
		v = "(devel)" // test binaries and go run record none
	}
	rev := buildSetting(info, "vcs.revision")
	if len(rev) > 12 {
		rev = rev[:12]
	}
	dirty := buildSetting(info, "vcs.modified") == "true"
	switch {
	case rev == "":
	case strings.HasSuffix(v, rev): // a pseudo-version ends with the revision
	case dirty:
		v += " rev " + rev + "+dirty"
	default:
		v += " rev " + rev
	}
	return v
}

func buildSetting(info *debug.BuildInfo, key string) string {
	for _, s := range info.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}
