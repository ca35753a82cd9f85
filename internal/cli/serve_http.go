package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/varwatch/varwatch/httpapi"
)

// serveHTTPFlags are the flags of serve's HTTP door (package httpapi):
// the JSON API, the SSE watch and the web console.
type serveHTTPFlags struct {
	addr         string
	writeTimeout time.Duration
}

func addServeHTTPFlags(fs *flag.FlagSet) *serveHTTPFlags {
	sh := &serveHTTPFlags{}
	fs.StringVar(&sh.addr, "http", "", "`address` of the HTTP door: the web console at /, the JSON API at POST /v1/{Method}, the watch as Server-Sent Events at /v1/watch (off when empty; same TLS and tokens as gRPC)")
	fs.DurationVar(&sh.writeTimeout, "http-write-timeout", httpapi.DefaultWriteTimeout, "cut an HTTP watch off when one write to its client blocks for this `duration`")
	return sh
}

func (sh *serveHTTPFlags) validate() error {
	if sh.writeTimeout <= 0 {
		return usagef("--http-write-timeout must be positive")
	}
	return nil
}

// httpDoor is the running HTTP server of --http, or nothing (lis nil).
type httpDoor struct {
	lis  net.Listener
	hs   *http.Server
	done chan struct{} // closed when Serve has returned
	once sync.Once     // stop runs once: from the shutdown sequence, and deferred
}

// listen opens the --http address, if any, so that a bad address fails
// serve before anything else starts.
func (sh *serveHTTPFlags) listen() (*httpDoor, error) {
	d := &httpDoor{}
	if sh.addr == "" {
		return d, nil
	}
	lis, err := net.Listen("tcp", sh.addr)
	if err != nil {
		return nil, fmt.Errorf("http listen on %s: %w", sh.addr, err)
	}
	d.lis = lis
	return d, nil
}

// serve starts serving cfg's handler, with TLS when serverTLS is set (the
// gRPC server's configuration, certificate reloads included).
func (d *httpDoor) serve(log hclog.Logger, cfg httpapi.Config, serverTLS *tls.Config, writeTimeout time.Duration) {
	if d.lis == nil {
		return
	}
	cfg.WriteTimeout = writeTimeout
	lis := d.lis
	if serverTLS != nil {
		lis = tls.NewListener(lis, serverTLS.Clone())
	}
	// No ReadTimeout or WriteTimeout: a watch is one long response. Each
	// of its writes has its own deadline (Config.WriteTimeout) instead.
	d.hs = &http.Server{Handler: httpapi.New(cfg), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug})}
	d.done = make(chan struct{})
	go func() {
		defer close(d.done)
		if err := d.hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("http serve ended", "error", err)
		}
	}()
	log.Info("http listening", "addr", d.lis.Addr().String(), "tls", serverTLS != nil, "auth", cfg.Auth != nil)
}

// stop ends the HTTP server: call it after grpcapi.Server.Shutdown, which
// ends its watches, so that only unary calls are left to finish, given
// timeout. Idempotent.
func (d *httpDoor) stop(timeout time.Duration) { d.once.Do(func() { d.stopOnce(timeout) }) }

func (d *httpDoor) stopOnce(timeout time.Duration) {
	if d.hs == nil {
		if d.lis != nil {
			_ = d.lis.Close()
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := d.hs.Shutdown(ctx); err != nil {
		_ = d.hs.Close()
	}
	<-d.done
}
