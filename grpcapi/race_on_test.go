//go:build race

package grpcapi

// raceEnabled: the race detector makes memory-heavy tests much slower;
// they write less under it.
const raceEnabled = true
