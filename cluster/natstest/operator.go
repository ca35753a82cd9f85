package natstest

import (
	"fmt"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// Operator is NATS's decentralized auth in memory: an operator trusted by
// the servers, a system account, and one account with JetStream whose
// users authenticate with a JWT the account signed and their nkey (a
// credentials file). Servers trusting it take no other connection.
type Operator struct {
	operator nkeys.KeyPair
	account  nkeys.KeyPair
	resolver *server.MemAccResolver
	opPub    string
	sysPub   string
}

// NewOperator makes the operator and its accounts.
func NewOperator() (*Operator, error) {
	o := &Operator{resolver: &server.MemAccResolver{}}
	var err error
	if o.operator, o.opPub, err = newKey(nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if _, o.sysPub, err = o.addAccount("SYS", false); err != nil {
		return nil, err
	}
	if o.account, _, err = o.addAccount("VARWATCH", true); err != nil {
		return nil, err
	}
	return o, nil
}

// newKey makes a key pair with create and returns it with its public key.
func newKey(create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, string, error) {
	kp, err := create()
	if err != nil {
		return nil, "", err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, "", err
	}
	return kp, pub, nil
}

// addAccount signs an account's JWT with the operator and stores it in
// the resolver; it returns the account's key pair and public key.
func (o *Operator) addAccount(name string, jetStream bool) (nkeys.KeyPair, string, error) {
	kp, pub, err := newKey(nkeys.CreateAccount)
	if err != nil {
		return nil, "", err
	}
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	if jetStream {
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	}
	token, err := ac.Encode(o.operator)
	if err != nil {
		return nil, "", fmt.Errorf("natstest: account %s: %w", name, err)
	}
	if err := o.resolver.Store(pub, token); err != nil {
		return nil, "", err
	}
	return kp, pub, nil
}

// Option makes the servers trust the operator (and only its users).
func (o *Operator) Option() Option {
	return func(so *server.Options) {
		so.TrustedKeys = []string{o.opPub}
		so.AccountResolver = o.resolver
		so.SystemAccount = o.sysPub
	}
}

// UserCreds returns the contents of a credentials file for a new user of
// the JetStream account: its JWT, signed by the account, and its seed.
func (o *Operator) UserCreds(name string) ([]byte, error) {
	kp, pub, err := newKey(nkeys.CreateUser)
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	token, err := uc.Encode(o.account)
	if err != nil {
		return nil, err
	}
	return jwt.FormatUserConfig(token, seed)
}
