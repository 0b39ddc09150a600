package projection_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/projection"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/projection")

// goldenOptions is a case's options.json.
type goldenOptions struct {
	AsOfSeq        int64  `json:"as_of_seq"`
	System         string `json:"system"`
	MaxMessages    int    `json:"max_messages"`
	MaxTurns       int    `json:"max_turns"`
	MaxTokens      int    `json:"max_tokens"`
	DropUnanswered bool   `json:"drop_unanswered"`
}

// loadLog reads a case's events.jsonl; events without a seq get their line
// number, as the store would assign them.
func loadLog(t testing.TB, path string) []events.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []events.Event
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		e, err := events.Decode(sc.Bytes())
		if err != nil {
			t.Fatalf("%s:%d: %v", path, line, err)
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("%s:%d: %v", path, line, err)
		}
		if e.Seq == 0 {
			e.Seq = int64(line)
		}
		evs = append(evs, e)
	}
	return evs
}

// TestBuild_Golden projects each case under testdata/projection and
// compares both shapes with the golden files (refresh with -update).
func TestBuild_Golden(t *testing.T) {
	dirs, err := filepath.Glob("../testdata/projection/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			evs := loadLog(t, filepath.Join(dir, "events.jsonl"))
			var o goldenOptions
			b, err := os.ReadFile(filepath.Join(dir, "options.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &o); err != nil {
				t.Fatal(err)
			}
			opts := projection.Options{AsOfSeq: o.AsOfSeq, System: o.System, MaxMessages: o.MaxMessages,
				MaxTurns: o.MaxTurns, MaxTokens: o.MaxTokens}
			if o.DropUnanswered {
				opts.Unanswered = projection.PolicyDropUnanswered
			}
			conv := projection.Build(evs, opts)
			openai := conv.OpenAI()
			if err := projection.CheckOpenAI(openai); err != nil {
				t.Errorf("OpenAI shape is not a valid request: %v", err)
			}
			anthropic := conv.Anthropic()
			if err := projection.CheckAnthropic(anthropic); err != nil {
				t.Errorf("Anthropic shape is not a valid request: %v", err)
			}
			compareGolden(t, filepath.Join(dir, "openai.json"), openai)
			compareGolden(t, filepath.Join(dir, "anthropic.json"), anthropic)
		})
	}
}

func compareGolden(t *testing.T, path string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the projection:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
