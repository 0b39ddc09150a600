package sqlite

// The payload codec, for the tests in package sqlite_test.
var (
	Pack   = pack
	Unpack = unpack
)
