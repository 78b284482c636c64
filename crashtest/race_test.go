//go:build race

package crashtest

// raceEnabled makes the kill test build the keel binary with the race
// detector too when the tests themselves run under it.
const raceEnabled = true
