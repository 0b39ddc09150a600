//go:build !race

package postgres_test

// raceEnabled reports whether the race detector is on; heavy tests are
// scaled down under it.
const raceEnabled = false
