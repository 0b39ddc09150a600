package postgres

// SearchWords exposes searchWords to the external tests.
var SearchWords = searchWords

// Words exposes words to the external tests.
var Words = words

// SearchVector exposes searchVector to the external tests.
var SearchVector = searchVector

// Snippet exposes snippet to the external tests.
var Snippet = snippet

// WordSpans returns the words wordSpans finds, for the external tests.
func WordSpans(text string) []string {
	var out []string
	for _, sp := range wordSpans(text) {
		out = append(out, sp.word)
	}
	return out
}
