package source_test

import (
	"context"
	"errors"
	"testing"

	"github.com/godwit/godwit/vma/source"
	"github.com/godwit/godwit/vma/source/vddk"
)

// TestNew: each name gives its transport; auto gives datastore on a
// machine without nbdkit's vddk plugin (Debian's nbdkit has none), and the
// vddk transport says what to install.
func TestNew(t *testing.T) {
	ctx := context.Background()
	if vddk.Installed(ctx, vddk.Config{}) {
		t.Fatal("this test expects a machine without the vddk plugin, as Debian's nbdkit is")
	}
	for _, tc := range []struct{ name, want string }{
		{source.Datastore, source.Datastore},
		{source.VDDK, source.VDDK},
		{source.Auto, source.Datastore},
		{"", source.Datastore},
	} {
		s, err := source.New(ctx, tc.name, vddk.Config{})
		if err != nil || s.Name() != tc.want {
			t.Errorf("New(%q) = %v, %v; want %s", tc.name, s, err, tc.want)
		}
	}
	if _, err := source.New(ctx, "ftp", vddk.Config{}); err == nil {
		t.Error(`New("ftp") succeeded`)
	}
	s, _ := source.New(ctx, source.VDDK, vddk.Config{})
	if err := s.Check(ctx); !errors.Is(err, vddk.ErrNotInstalled) {
		t.Errorf("vddk Check = %v, want ErrNotInstalled", err)
	}
	d, _ := source.New(ctx, source.Datastore, vddk.Config{})
	if err := d.Check(ctx); err != nil {
		t.Errorf("datastore Check = %v", err)
	}
}
