package testkit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
)

// SameDisk compares a sparse source file with a target: every data extent
// of the source equal, and whatever else the target holds zero.
func SameDisk(srcPath, dstPath string) error {
	src, err := os.Open(srcPath)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Open(dstPath)
	if err != nil {
		return err
	}
	defer dst.Close()
	srcData, err := DataExtents(src)
	if err != nil {
		return err
	}
	if len(srcData) == 0 {
		return errors.New("the source disk holds no data: nothing was tested")
	}
	for _, e := range srcData {
		a, b := make([]byte, e[1]-e[0]), make([]byte, e[1]-e[0])
		if _, err := src.ReadAt(a, e[0]); err != nil {
			return err
		}
		if _, err := dst.ReadAt(b, e[0]); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("bytes [%d, %d) differ", e[0], e[1])
		}
	}
	dstData, err := DataExtents(dst)
	if err != nil {
		return err
	}
	for _, e := range dstData {
		for off := e[0]; off < e[1]; {
			n := min(e[1]-off, 1<<20)
			buf := make([]byte, n)
			if _, err := dst.ReadAt(buf, off); err != nil {
				return err
			}
			for i, c := range buf {
				if c != 0 && !inside(srcData, off+int64(i)) {
					return fmt.Errorf("byte %d is %#x where the source has a hole", off+int64(i), c)
				}
			}
			off += n
		}
	}
	return nil
}

// DataExtents lists the [start, end) data extents of f (SEEK_DATA/SEEK_HOLE).
func DataExtents(f *os.File) ([][2]int64, error) {
	const seekData, seekHole = 3, 4
	var out [][2]int64
	for off := int64(0); ; {
		start, err := f.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		end, err := f.Seek(start, seekHole)
		if err != nil {
			return nil, err
		}
		out = append(out, [2]int64{start, end})
		off = end
	}
}

func inside(extents [][2]int64, off int64) bool {
	for _, e := range extents {
		if off >= e[0] && off < e[1] {
			return true
		}
	}
	return false
}

// FileSum returns the SHA-256 of the file at path, in hex: a file's bytes
// compared before and after, such as a replica's around a conversion.
func FileSum(tb testing.TB, path string) string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
