package metrics_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/godwit/godwit/oma/metrics"
	"github.com/godwit/godwit/oma/store"
	vmametrics "github.com/godwit/godwit/vma/metrics"
	vmastore "github.com/godwit/godwit/vma/store"
)

// TestDashboardUsesTheMetrics: scripts/grafana-dashboard.json is a
// dashboard (valid JSON, with panels), and every godwit_ metric its
// queries name is one the OMA or the VMA exposes.
func TestDashboardUsesTheMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../scripts/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []any  `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("the dashboard: %v (uid %q, %d panels)", err, dash.UID, len(dash.Panels))
	}
	known := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	add := func(c prometheus.Collector) {
		ch := make(chan *prometheus.Desc, 64)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			if m := fq.FindStringSubmatch(d.String()); m != nil {
				known[m[1]] = true
			}
		}
	}
	st, err := store.Open(t.TempDir()+"/oma.db", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	vst, err := vmastore.Open(t.TempDir()+"/vma.db", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer vst.Close()
	for _, c := range []prometheus.Collector{metrics.New(st, metrics.Config{}), metrics.NewApplyLag(nil), vmametrics.New(vst, vmametrics.Config{VMA: "vma-1"})} {
		add(c)
	}
	used := regexp.MustCompile(`godwit_[a-z_]+`).FindAllString(string(raw), -1)
	slices.Sort(used)
	for _, name := range slices.Compact(used) {
		base := regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(name, "")
		if !known[name] && !known[base] {
			t.Errorf("the dashboard queries %s, which neither the OMA nor the VMA exposes", name)
		}
	}
}
