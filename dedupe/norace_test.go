//go:build !race

package dedupe_test

const (
	concurrentRequests = 200 // TestRunner_Turn_Concurrent
	processRequests    = 200 // TestRunner_Turn_Processes
	killRounds         = 12  // TestRunner_Turn_KillNine
)
