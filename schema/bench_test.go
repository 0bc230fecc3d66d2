package schema_test

import (
	"encoding/json"
	"testing"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/schema"
)

// BenchmarkCheckEvent measures validating one progress event (envelope and
// data), next to encoding/json decoding the same bytes into the Go types,
// the least a consumer does without a schema; it reports the ratio.
func BenchmarkCheckEvent(b *testing.B) {
	v := newValidator(b)
	ex, err := schema.Examples(events.TypeProgress)
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := json.Marshal(events.Event{SpecVersion: "1.0", ID: "x", Source: "/s", Type: events.TypeProgress,
		Time: testTime, DataContentType: "application/json", Data: ex[0]})
	b.SetBytes(int64(len(raw)))
	var validate, decode int64
	for b.Loop() {
		t0 := nanotime()
		if err := v.CheckEvent(raw); err != nil {
			b.Fatal(err)
		}
		t1 := nanotime()
		var ev events.Event
		var p events.Progress
		if err := json.Unmarshal(raw, &ev); err != nil {
			b.Fatal(err)
		}
		if err := ev.Decode(&p); err != nil {
			b.Fatal(err)
		}
		validate += t1 - t0
		decode += nanotime() - t1
	}
	b.ReportMetric(float64(validate)/float64(b.N), "validate-ns/event")
	b.ReportMetric(float64(decode)/float64(b.N), "decode-ns/event")
	b.ReportMetric(float64(validate)/float64(decode), "validate/decode")
}
