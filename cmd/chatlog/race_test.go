//go:build race

package main

// raceEnabled reports whether the race detector is on; the storms of the
// end-to-end tests are scaled down under it.
const raceEnabled = true
