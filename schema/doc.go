// Package schema holds the JSON Schema (draft 2020-12) of every godwit event
// payload and of the CloudEvents envelope, embedded in the binary, and
// validates messages against them.
//
// # Files
//
// json/defs.json holds shared definitions (ids, sealed secrets, failures);
// json/cloudevent.json the envelope; json/<event type>.json each payload,
// named by its versioned type, for example io.godwit.progress.v1.json. Each
// payload schema carries "examples", which the tests validate and decode
// into the Go types of package events.
//
// # Errors
//
// A rejected document gives an [*Error] naming the JSON path of the
// offending field, such as $.vms[0].disks[1].capacity_bytes; for a missing
// or unexpected property the path ends in that property's name.
package schema
