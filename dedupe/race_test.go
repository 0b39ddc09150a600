//go:build race

package dedupe_test

// Sizes under the race detector, which slows everything (the SQLite driver
// most) by an order of magnitude.
const (
	concurrentRequests = 200 // TestRunner_Turn_Concurrent
	processRequests    = 100 // TestRunner_Turn_Processes
	killRounds         = 10  // TestRunner_Turn_KillNine
)
