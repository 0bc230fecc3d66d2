//go:build !linux

package file

import (
	"errors"
	"os"

	"github.com/godwit/godwit/vma/copier"
)

// extents says everything is data: holes are found on Linux only.
func extents(_ *os.File, off, end int64) ([]copier.Extent, error) {
	return []copier.Extent{{Offset: off, Length: end - off}}, nil
}

// punchHole is not supported here: WriteZeroes writes zeros.
func punchHole(*os.File, int64, int64) error { return errors.ErrUnsupported }
