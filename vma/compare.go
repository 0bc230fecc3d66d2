package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/godwit/godwit/vma/copier"
)

// compareUsage documents `vma compare`.
const compareUsage = `Usage: vma compare A B

Tells whether A and B hold the same bytes: each an NBD URI
(nbd://host[:port]/export, nbd+unix:///export?socket=PATH) or a local file,
as vma copy takes them. Only the areas that either side says hold data are
read (from both sides) and compared: holes and zero extents are never read,
so a huge sparse image compares in the time its data takes. Prints
"same: SIZE bytes (N bytes of data compared)" and exits 0, or prints
"differ at offset N" (the first byte that differs) and exits 1; images of
different sizes are an error.
`

// compareCmd implements `vma compare A B`.
func compareCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vma compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), compareUsage) }
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.Usage()
		return fmt.Errorf("compare: want A and B, got %d arguments", len(pos))
	}
	var sides [2]copySource
	for i, s := range pos {
		src, closeSrc, err := openSource(ctx, s, 1)
		if err != nil {
			return fmt.Errorf("compare: %s: %w", s, err)
		}
		defer closeSrc()
		sides[i] = src
	}
	if a, b := sides[0].Size(), sides[1].Size(); a != b {
		return fmt.Errorf("compare: sizes differ: %s holds %d bytes, %s %d", pos[0], a, pos[1], b)
	}
	res, err := copier.Compare(ctx, sides[0], sides[1], copier.CompareConfig{})
	if de := (*copier.DiffError)(nil); errors.As(err, &de) {
		fmt.Fprintf(stdout, "differ at offset %d\n", de.Offset)
		return fmt.Errorf("compare: %s and %s differ at offset %d", pos[0], pos[1], de.Offset)
	}
	if err != nil {
		return fmt.Errorf("compare %s %s: %w", pos[0], pos[1], err)
	}
	_, err = fmt.Fprintf(stdout, "same: %d bytes (%d bytes of data compared)\n", res.Size, res.Compared)
	return err
}
