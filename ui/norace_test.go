//go:build !race

package ui_test

// raceEnabled reports whether the race detector is on: the browser tests
// run only in the pass without it.
const raceEnabled = false
