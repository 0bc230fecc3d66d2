package schema_test

import "time"

var testTime = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func nanotime() int64 { return time.Now().UnixNano() }
