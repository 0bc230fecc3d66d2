package schema_test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestScriptExamplesAreValidEvents keeps the sample events the README
// publishes with the nats CLI valid.
func TestScriptExamplesAreValidEvents(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	files, err := filepath.Glob("../scripts/examples/*.event.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no sample events: %v", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.ValidateEvent(raw); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
