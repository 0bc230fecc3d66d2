package main

import (
	"testing"

	"github.com/godwit/godwit/events"
)

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		p    events.Progress
		want string
	}{
		{events.Progress{JobID: "repl-vm-1-1", Phase: events.PhaseSnapshotting},
			"repl-vm-1-1 snapshotting   0.0% 0 B of 0 B at 0 B/s"},
		{events.Progress{JobID: "repl-vm-1-1", Phase: events.PhaseCopying, Percent: 25,
			BytesDone: 10 << 30, BytesTotal: 40 << 30, RateBytesPerSecond: 256 << 20},
			"repl-vm-1-1 copying       25.0% 10.0 GiB of 40.0 GiB at 256.0 MiB/s"},
		{events.Progress{JobID: "repl-vm-1-1", Phase: events.PhaseVerifying, Percent: 100, BytesDone: 40 << 30, BytesTotal: 40 << 30,
			VerifyBytesDone: 10 << 30, VerifyBytesTotal: 40 << 30, VerifyRateBytesPerSecond: 512 << 20},
			"repl-vm-1-1 verifying     25.0% 10.0 GiB of 40.0 GiB checked at 512.0 MiB/s"},
		{events.Progress{JobID: "j", Phase: events.PhaseFinalizing, Percent: 100,
			BytesDone: 1536, BytesTotal: 1536, RateBytesPerSecond: 1023},
			"j finalizing   100.0% 1.5 KiB of 1.5 KiB at 1023 B/s"},
	} {
		if got := format(tc.p); got != tc.want {
			t.Errorf("format(%+v)\n got %q\nwant %q", tc.p, got, tc.want)
		}
	}
}
