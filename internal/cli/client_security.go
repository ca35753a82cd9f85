package cli

import (
	"flag"
	"os"
	"strconv"

	vwclient "github.com/varwatch/varwatch/grpcapi/client"
)

// securityFlags are the TLS and token flags of every client command.
type securityFlags struct {
	tls        bool
	ca         string
	cert, key  string
	serverName string
	token      string
	tokenFile  string
}

// addSecurityFlags declares the client's TLS and token flags on fs. The
// TLS flags default to their environment variables; the token's variables
// are read only when dialing, so that --help never prints a secret.
func addSecurityFlags(fs *flag.FlagSet) *securityFlags {
	sf := &securityFlags{}
	useTLS, _ := strconv.ParseBool(os.Getenv("VARWATCH_TLS"))
	fs.BoolVar(&sf.tls, "tls", useTLS, "connect with TLS, checking the server against the system's roots unless --tls-ca is given (also $VARWATCH_TLS; implied by the other --tls flags)")
	fs.StringVar(&sf.ca, "tls-ca", os.Getenv("VARWATCH_TLS_CA"), "PEM `file` of the CA certificates the server's must chain to (also $VARWATCH_TLS_CA)")
	fs.StringVar(&sf.cert, "tls-cert", os.Getenv("VARWATCH_TLS_CERT"), "PEM `file` of the client certificate, for servers that require one (also $VARWATCH_TLS_CERT)")
	fs.StringVar(&sf.key, "tls-key", os.Getenv("VARWATCH_TLS_KEY"), "PEM `file` of the client certificate's key (also $VARWATCH_TLS_KEY)")
	fs.StringVar(&sf.serverName, "tls-server-name", os.Getenv("VARWATCH_TLS_SERVER_NAME"), "`name` to check in the server's certificate instead of the --server host (also $VARWATCH_TLS_SERVER_NAME)")
	fs.StringVar(&sf.token, "token", "", "bearer `token` to authenticate with (prefer --token-file or $VARWATCH_TOKEN: arguments are visible to other users)")
	fs.StringVar(&sf.tokenFile, "token-file", "", "`file` holding the bearer token (also $VARWATCH_TOKEN_FILE)")
	return sf
}

// config resolves the flags into a client configuration. The token is
// --token, else --token-file, else $VARWATCH_TOKEN, else the file named by
// $VARWATCH_TOKEN_FILE.
func (sf *securityFlags) config() (vwclient.Config, error) {
	var cfg vwclient.Config
	if sf.tls || sf.ca != "" || sf.cert != "" || sf.key != "" || sf.serverName != "" {
		tc, err := vwclient.LoadTLS(vwclient.TLSFiles{CA: sf.ca, Cert: sf.cert, Key: sf.key, ServerName: sf.serverName})
		if err != nil {
			return cfg, usagef("%v", err)
		}
		cfg.TLS = tc
	}
	tokenFile := sf.tokenFile
	switch {
	case sf.token != "" && sf.tokenFile != "":
		return cfg, usagef("give --token or --token-file, not both")
	case sf.token != "":
		cfg.Token = sf.token
	case sf.tokenFile != "":
	case os.Getenv("VARWATCH_TOKEN") != "":
		cfg.Token = os.Getenv("VARWATCH_TOKEN")
	default:
		tokenFile = os.Getenv("VARWATCH_TOKEN_FILE")
	}
	if cfg.Token == "" && tokenFile != "" {
		tok, err := vwclient.ReadTokenFile(tokenFile)
		if err != nil {
			return cfg, usagef("token file: %v", err)
		}
		cfg.Token = tok
	}
	return cfg, nil
}
