package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// benchJSON is the part of bench's JSON document the tests inspect.
type benchJSON struct {
	Machine struct {
		GOOS   string `json:"goos"`
		GOARCH string `json:"goarch"`
		CPUs   int    `json:"cpus"`
		Go     string `json:"go"`
	} `json:"machine"`
	Quick    bool   `json:"quick"`
	Database string `json:"database"`
	Kept     bool   `json:"kept"`
	Results  []struct {
		Workload string   `json:"workload"`
		What     string   `json:"what"`
		Ops      int64    `json:"ops"`
		Unit     string   `json:"unit"`
		Rate     float64  `json:"rate"`
		Samples  int      `json:"samples"`
		P50      float64  `json:"p50_ms"`
		P99      float64  `json:"p99_ms"`
		P999     *float64 `json:"p999_ms"`
	} `json:"results"`
}

// shrinkBench makes bench runs of this test take a fraction of --quick.
func shrinkBench(t *testing.T) {
	old := benchShrink
	benchShrink = 20
	t.Cleanup(func() { benchShrink = old })
}

func TestBench_JSON(t *testing.T) {
	shrinkBench(t)
	db := tempDB(t)
	r := run(t, "", "--db", db, "bench", "--quick", "--workloads", "parallel-appends,ingest", "--json")
	wantCode(t, r, 0)
	var rep benchJSON
	decodeDoc(t, r.stdout, &rep)
	if rep.Machine.GOOS == "" || rep.Machine.GOARCH == "" || rep.Machine.CPUs < 1 || !strings.HasPrefix(rep.Machine.Go, "go") {
		t.Errorf("machine = %+v, want GOOS, GOARCH, CPUs and Go version", rep.Machine)
	}
	if !rep.Quick || rep.Kept {
		t.Errorf("quick %v, kept %v; want true, false", rep.Quick, rep.Kept)
	}
	var names []string
	for _, res := range rep.Results {
		names = append(names, res.Workload)
		if res.Ops <= 0 || res.Rate <= 0 || res.Samples <= 0 || res.Unit == "" || res.What == "" {
			t.Errorf("%s: ops %d, rate %v %q, %d samples, what %q; want all set", res.Workload, res.Ops, res.Rate, res.Unit, res.Samples, res.What)
		}
		if res.P50 <= 0 || res.P50 > res.P99 || (res.P999 != nil && res.P99 > *res.P999) {
			t.Errorf("%s: p50 %v, p99 %v, p999 %v; want 0 < p50 <= p99 <= p999", res.Workload, res.P50, res.P99, res.P999)
		}
	}
	if want := []string{"parallel-appends", "ingest"}; !slices.Equal(names, want) {
		t.Errorf("workloads %q, want %q", names, want)
	}
	// The scratch database is gone, and --db was never opened.
	if _, err := os.Stat(filepath.Dir(rep.Database)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("scratch directory of %s: %v, want it removed", rep.Database, err)
	}
	if _, err := os.Stat(db); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("--db %s: %v, want it untouched", db, err)
	}
}

func TestBench_TableAndDir(t *testing.T) {
	shrinkBench(t)
	dir := filepath.Join(t.TempDir(), "keep")
	r := run(t, "", "bench", "--quick", "--workloads", "search", "--dir", dir)
	wantCode(t, r, 0)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if !strings.HasPrefix(lines[0], "machine:") || !strings.Contains(r.stdout, "(synchronous=FULL, kept)") {
		t.Errorf("no machine and kept database in the header:\n%s", r.stdout)
	}
	if n := len(lines); n < 2 || !strings.HasPrefix(lines[n-2], "WORKLOAD ") || !strings.HasPrefix(lines[n-1], "search ") {
		t.Errorf("want a table of one search row last:\n%s", r.stdout)
	}
	kept, _ := filepath.Glob(filepath.Join(dir, "chatlog-bench-*.db"))
	if len(kept) != 1 {
		t.Fatalf("--dir holds %q, want one database", kept)
	}
	// The kept database is a sound chatlog database.
	r = run(t, "", "--db", kept[0], "verify")
	wantCode(t, r, 0)
}

func TestBench_UsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--workloads", "ingest,nope"},
		{"bench", "--workloads", ""},
		{"bench", "extra"},
		{"bench", "--quick=maybe"},
	} {
		r := run(t, "", args...)
		wantCode(t, r, 2)
		wantOneLine(t, r.stderr, "chatlog bench:")
		if r.stdout != "" {
			t.Errorf("%q printed %q, want nothing", args, r.stdout)
		}
	}
	r := run(t, "", "bench", "--workloads", "ingest,nope")
	wantOneLine(t, r.stderr, `unknown workload "nope"`, "parallel-appends")
}

func TestBench_Help(t *testing.T) {
	r := run(t, "", "bench", "--help")
	wantCode(t, r, 0)
	for _, s := range []string{"chatlog [--db PATH|URL] bench", "--quick", "--workloads", "--dir", "--json", "streaming-chunks", "Example:\n  chatlog bench"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("help does not mention %q:\n%s", s, r.stdout)
		}
	}
	if r = run(t, "", "--help"); !strings.Contains(r.stdout, "  bench ") {
		t.Errorf("chatlog --help does not list bench:\n%s", r.stdout)
	}
}
