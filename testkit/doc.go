// Package testkit holds the small helpers that the tests of many packages
// share: waiting for a condition within the test's own deadline, free port
// ranges, a hand-set clock, a log buffer, this machine's processes and
// sparse disk images.
//
// # A leaf
//
// It imports only the standard library, so that a test of bus, events or
// oma/exports that uses it links neither appliance. Helpers that start an
// OMA or a VMA live in testbed, which imports this package.
package testkit
