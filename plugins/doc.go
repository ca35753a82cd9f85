// Package plugins is varwatch's WebAssembly filter host: it loads filter
// plugins with wazero, runs batches of updates through ordered chains of
// them, and keeps a faulty plugin from hurting anything but its own
// chain's batch.
//
// The pieces, one per file:
//
//   - ABI.md and package abi: the wire format between host and plugin.
//   - config.go: plugin options, --filter flags and the JSON config file.
//   - plugin.go: a loaded plugin, compiled once per process.
//   - instance.go: one instance of it and the call protocol;
//     deadline.go its reusable per-batch deadline; guestlog.go its output.
//   - stage.go, chain.go: a filter in a chain, and the chain's Run.
//   - manager.go: the registry, chain dedupe and reload.
//   - fault.go, errors.go, stats.go: failures, errors, counters.
//   - sdk/: the Go guest SDK; examples/: plugins users deploy.
//
// The package does not import the engine: the gRPC adapter converts
// engine events to Update and applies the Verdicts (see README.md for a
// sketch). RATIONALE.md records why things are the way they are.
package plugins

import "github.com/varwatch/varwatch/plugins/abi"

// Rebuilds the committed test fixtures from their WAT sources.
//go:generate sh -c "for f in testdata/*.wat; do wat2wasm $DOLLAR{f} -o $DOLLAR{f%.wat}.wasm || exit 1; done"

// The wire types, under the host's names.
type (
	Update   = abi.Update
	Value    = abi.Value
	Tensor   = abi.Tensor
	Type     = abi.Type
	Kind     = abi.Kind
	KV       = abi.KV
	Metadata = abi.Metadata
	Verdict  = abi.Verdict
	Action   = abi.Action
)

// Actions of a Verdict.
const (
	Pass    = abi.Pass
	Drop    = abi.Drop
	Replace = abi.Replace
)

// Value types and update kinds.
const (
	TypeNone      = abi.TypeNone
	TypeFloat     = abi.TypeFloat
	TypeInteger   = abi.TypeInteger
	TypeString    = abi.TypeString
	TypeBoolean   = abi.TypeBoolean
	TypeChoice    = abi.TypeChoice
	TypeModule    = abi.TypeModule
	TypeEmbedding = abi.TypeEmbedding
	TypeTensor    = abi.TypeTensor

	KindInitialValue = abi.KindInitialValue
	KindValueChange  = abi.KindValueChange
	KindRegistered   = abi.KindRegistered
	KindDeleted      = abi.KindDeleted
)

// Value constructors.
var (
	Float       = abi.Float
	Integer     = abi.Integer
	String      = abi.String
	Boolean     = abi.Boolean
	Choice      = abi.Choice
	Module      = abi.Module
	Embedding   = abi.Embedding
	TensorValue = abi.TensorValue
)
