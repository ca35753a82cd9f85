// Command varwatch runs the varwatch server (varwatch serve) and is its
// command-line client (session, register, set, get, list, delete, watch,
// ping, version). Run "varwatch help" for the commands. Everything but the process
// wiring lives in internal/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/varwatch/varwatch/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
