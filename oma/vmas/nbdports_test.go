package vmas_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vmas"
	"github.com/godwit/godwit/testkit"
)

// TestRegisterVMAShares: each VMA gets the lowest share of the pool that
// no other VMA holds (VMAs from before shares hold none), at most the
// pool, and a full pool is Unavailable naming the limit.
func TestRegisterVMAShares(t *testing.T) {
	t.Parallel()
	pool := store.Ports{First: 100, Last: 109}
	held := func(ports ...int) []store.VMA { // VMAs holding first-last pairs; -1: one from before shares
		var out []store.VMA
		for i := 0; i < len(ports); i += 2 {
			v := store.VMA{ID: "held-" + string(rune('a'+i/2)), APIPort: 9500 + i}
			if ports[i] >= 0 {
				v.NBDPorts = &store.Ports{First: ports[i], Last: ports[i+1]}
			}
			out = append(out, v)
		}
		return out
	}
	tests := []struct {
		name    string
		before  []store.VMA
		n       int
		want    store.Ports
		wantErr string
	}{
		{"first", nil, 4, store.Ports{First: 100, Last: 103}, ""},
		{"default size", nil, 0, store.Ports{First: 100, Last: 107}, ""},
		{"after another", held(100, 103), 4, store.Ports{First: 104, Last: 107}, ""},
		{"in a gap", held(100, 101, 104, 105), 2, store.Ports{First: 102, Last: 103}, ""},
		{"a gap too small", held(100, 101, 104, 105), 3, store.Ports{First: 106, Last: 108}, ""},
		{"from before shares holds none", held(-1, -1), 4, store.Ports{First: 100, Last: 103}, ""},
		{"bigger than the pool: the pool", nil, 50, pool, ""},
		{"full", held(100, 103, 104, 107), 4, store.Ports{}, "the NBD port pool 100-109 has no 4 free ports left"},
		{"full, the limit named", held(100, 109), 1, store.Ports{}, "-nbd-ports-per-vma 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			if err := st.Update(func(tx *bbolt.Tx) error {
				for _, v := range tt.before {
					if err := store.PutVMA(tx, v); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			// An API port of its own: the parallel subtests would all
			// check 9081 at once, and one find it held by another.
			port, _ := testkit.FreePorts(t, 1)
			cred, err := vmas.Register(st, vmas.Registration{ID: "vma-new", APIPort: port, NBDPool: pool, NBDPortsPerVMA: tt.n}, time.Now())
			switch {
			case tt.wantErr == "" && (err != nil || cred.NBDPorts != tt.want):
				t.Errorf("RegisterVMA share = %s, %v, want %s", cred.NBDPorts, err, tt.want)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || fault.KindOf(err) != fault.Unavailable):
				t.Errorf("RegisterVMA = %s, %v, want Unavailable with %q", cred.NBDPorts, err, tt.wantErr)
			case tt.wantErr != "":
				if err := st.View(func(tx *bbolt.Tx) error { _, err := store.GetVMA(tx, "vma-new"); return err }); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("a refused VMA was stored: %v", err)
				}
			}
		})
	}
}
