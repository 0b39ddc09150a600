package events

import (
	"strings"
	"unicode"
)

// MaxTitleRunes is the longest title kept, in characters.
const MaxTitleRunes = 100

// SanitizeTitle makes a user-given title safe to show and compare: control
// and format characters (zero-width spaces and joiners, direction marks,
// byte-order marks) are removed, runs of whitespace become one space, the
// ends are trimmed, and it is cut to MaxTitleRunes characters. An empty
// result means no title. Invalid UTF-8 is dropped.
func SanitizeTitle(title string) string {
	var b strings.Builder
	space := false
	n := 0
	for _, r := range title {
		switch {
		case r == utf8RuneError:
			continue
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			continue
		}
		if space {
			if n+1 >= MaxTitleRunes {
				break
			}
			b.WriteByte(' ')
			n++
			space = false
		}
		if n >= MaxTitleRunes {
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

const utf8RuneError = '\uFFFD'
