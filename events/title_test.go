package events_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/chatlog/chatlog/events"
)

func TestSanitizeTitle(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                        "plain",
		"  padded  ":                   "padded",
		"many   inner\t\nspaces":       "many inner spaces",
		"zero\u200bwidth\u200d joiner": "zerowidth joiner",
		"bidi\u202e mark\ufeff":        "bidi mark",
		"bell\x07 and esc\x1b[31m":     "bell and esc[31m",
		"\u200b\u200b":                 "",
		"":                             "",
		"bad \xff utf8":                "bad utf8",
		"émoji 🎉 kept":                 "émoji 🎉 kept",
		"nbsp\u00a0\u00a0collapsed":    "nbsp collapsed",
		"line\u2028separator":          "line separator",
	} {
		if got := events.SanitizeTitle(in); got != want {
			t.Errorf("SanitizeTitle(%q) = %q, want %q", in, got, want)
		}
	}
	long := strings.Repeat("é", events.MaxTitleRunes+20)
	if got := events.SanitizeTitle(long); utf8.RuneCountInString(got) != events.MaxTitleRunes {
		t.Errorf("a %d-character title keeps %d characters, want %d", events.MaxTitleRunes+20, utf8.RuneCountInString(got), events.MaxTitleRunes)
	}
	// A cut never leaves a trailing space.
	spaced := strings.Repeat("a", events.MaxTitleRunes-1) + " bcd"
	if got := events.SanitizeTitle(spaced); got != strings.Repeat("a", events.MaxTitleRunes-1) {
		t.Errorf("cut at a space = %q", got)
	}
}

func FuzzSanitizeTitle(f *testing.F) {
	for _, s := range []string{"", "t", " a  b ", "\u200bx", "\xff\xfe", strings.Repeat("ab ", 60)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := events.SanitizeTitle(in)
		if !utf8.ValidString(got) {
			t.Fatalf("SanitizeTitle(%q) = %q: invalid UTF-8", in, got)
		}
		if n := utf8.RuneCountInString(got); n > events.MaxTitleRunes {
			t.Fatalf("SanitizeTitle(%q) has %d characters", in, n)
		}
		if got != strings.TrimSpace(got) || strings.Contains(got, "  ") {
			t.Fatalf("SanitizeTitle(%q) = %q: whitespace not collapsed", in, got)
		}
		if again := events.SanitizeTitle(got); again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, got, again)
		}
	})
}

func TestUsageAddLabels(t *testing.T) {
	a := &events.Usage{Input: 1, Cost: 0.1, ActualCost: 0.2, Currency: "USD", PricingVersion: "2026-01"}
	b := &events.Usage{Output: 2, Cost: 0.2, Currency: "USD", BillingProvider: "openai"}
	got := a.Add(b)
	want := events.Usage{Input: 1, Output: 2, Cost: 0.3, ActualCost: 0.2, Currency: "USD", PricingVersion: "2026-01", BillingProvider: "openai"}
	if got != want {
		t.Errorf("Add = %+v, want %+v", got, want)
	}
	got = got.Add(&events.Usage{Currency: "EUR"})
	if got.Currency != events.MixedLabel || got.PricingVersion != "2026-01" {
		t.Errorf("Add of another currency = %+v, want currency %q", got, events.MixedLabel)
	}
}
