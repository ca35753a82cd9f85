//go:build race

package engine

// raceEnabled: the race detector slows pure computation (a regexp, a glob)
// about twentyfold; tests that need a costly request shrink it.
const raceEnabled = true
