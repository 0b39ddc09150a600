//go:build race

package repotest

// raceEnabled reports whether the race detector is on; the storm is
// scaled down under it.
const raceEnabled = true
