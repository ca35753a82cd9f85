// Command goprobe is a Go SDK test plugin: it passes every update, except
// that a string value picks a misbehaviour: "panic" panics, "oom" allocates
// until the memory limit stops it, "print" writes to stdout and stderr. The
// benchmarks use its pass path as the Go SDK's pass-through cost.
package main

import (
	"fmt"
	"os"

	"github.com/varwatch/varwatch/plugins/sdk"
)

var hoard [][]byte

func init() {
	sdk.Register(func(u *sdk.Update, _ sdk.Params) sdk.Verdict {
		if u.Type == sdk.TypeString {
			switch u.New().Str {
			case "panic":
				panic("goprobe: asked to panic")
			case "oom":
				for {
					hoard = append(hoard, make([]byte, 1<<20))
				}
			case "print":
				fmt.Println("goprobe: hello on stdout")
				fmt.Fprintln(os.Stderr, "goprobe: hello on stderr")
			}
		}
		return sdk.Pass()
	})
}

func main() {}
