//go:build !race

package keelbin

const raceEnabled = false
