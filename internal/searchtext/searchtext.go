// Package searchtext holds what both stores' full-text search take to be
// part of a word beyond letters and numbers, so a query splits into the
// words the SQLite store's FTS5 index holds and the PostgreSQL store's
// word splitter makes alike.
package searchtext

// inWordMarks are the combining diacritics (U+0300 to U+033F, one bit
// each) that SQLite's unicode61 tokenizer (remove_diacritics 2) takes as
// part of a word and drops, so a letter typed as base + mark (e followed
// by U+0301) reads as the base letter: the marks of the Latin letters it
// folds. Every other combining mark separates words.
const inWordMarks = 1<<0x00 | 1<<0x01 | 1<<0x02 | 1<<0x03 | 1<<0x04 | 1<<0x06 | 1<<0x07 | 1<<0x08 |
	1<<0x09 | 1<<0x0A | 1<<0x0B | 1<<0x0C | 1<<0x0F | 1<<0x11 | 1<<0x1B | 1<<0x23 | 1<<0x24 | 1<<0x25 |
	1<<0x26 | 1<<0x27 | 1<<0x28 | 1<<0x2D | 1<<0x2E | 1<<0x30 | 1<<0x31

// InWordMark reports whether r is a combining diacritic that belongs to
// the word it is in and is dropped from it (see inWordMarks).
func InWordMark(r rune) bool {
	return r >= 0x300 && r < 0x340 && inWordMarks&(uint64(1)<<(r-0x300)) != 0
}
