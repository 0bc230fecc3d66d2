package testkit

import "testing"

// Long skips the test under go test -short (make check): for the tests
// that take more than about 20 s, such as the 5,013-VM discovery, the demo
// and the kill loops. make test runs them.
func Long(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("long: skipped by -short (make check); make test runs it")
	}
}
