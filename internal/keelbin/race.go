//go:build race

package keelbin

// raceEnabled builds the binary with the race detector, as the tests that
// run it are.
const raceEnabled = true
