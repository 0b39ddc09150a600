//go:build race

package ledger_test

// Storm sizes under the race detector, where SQLite runs some 50x slower.
const (
	stormKeys        = 60  // TestLedger_Post_concurrent: 50 goroutines post each key
	processStormKeys = 100 // TestLedger_Post_processes
)
