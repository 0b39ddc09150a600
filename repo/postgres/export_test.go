package postgres

// SearchWords exposes searchWords to the external tests.
var SearchWords = searchWords
