//go:build !race

package ledger_test

// Storm sizes without the race detector.
const (
	stormKeys        = 200 // TestLedger_Post_concurrent: 50 goroutines post each key
	processStormKeys = 300 // TestLedger_Post_processes
)
