// Command redact is a varwatch filter plugin that masks string values
// matching a regular expression, in the new and the old value alike (a
// watcher sees both), so secrets and personal data never leave the server.
//
// Params: pattern (required, RE2 syntax), replacement (default "***"),
// whole (default false: replace only the matching parts; true: replace the
// whole value when any part matches). Choice and module values are names
// from a fixed set and pass unchanged.
package main

import (
	"errors"
	"regexp"

	"github.com/varwatch/varwatch/plugins/sdk"
)

var (
	re          *regexp.Regexp
	replacement string
	whole       bool
)

func init() {
	sdk.RegisterInit(func(p sdk.Params) error {
		if err := p.Only("pattern", "replacement", "whole"); err != nil {
			return err
		}
		if p.String("pattern", "") == "" {
			return errors.New("param pattern is required")
		}
		var err error
		if re, err = regexp.Compile(p["pattern"]); err != nil {
			return errors.New("param pattern: " + err.Error())
		}
		replacement = p.String("replacement", "***")
		whole, err = p.Bool("whole", false)
		return err
	})
	sdk.Register(filter)
}

// mask returns s redacted and whether anything matched.
func mask(s string) (string, bool) {
	if !re.MatchString(s) {
		return s, false
	}
	if whole {
		return replacement, true
	}
	return re.ReplaceAllLiteralString(s, replacement), true
}

func filter(u *sdk.Update, _ sdk.Params) sdk.Verdict {
	if u.Type != sdk.TypeString {
		return sdk.Pass()
	}
	v := sdk.Pass()
	if nv, hit := mask(u.New().Str); hit {
		v = v.WithNew(sdk.String(nv))
	}
	if old := u.Old(); old.Type == sdk.TypeString {
		if ov, hit := mask(old.Str); hit {
			v = v.WithOld(sdk.String(ov))
		}
	}
	return v
}

func main() {}
