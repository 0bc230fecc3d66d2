package file

import (
	"errors"
	"os"
	"syscall"

	"github.com/godwit/godwit/vma/copier"
)

const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE

	fallocKeepSize  = 0x01 // FALLOC_FL_KEEP_SIZE
	fallocPunchHole = 0x02 // FALLOC_FL_PUNCH_HOLE
)

// extents walks [off, end) with SEEK_DATA and SEEK_HOLE. They take an
// absolute offset, so concurrent calls do not disturb each other (ReadAt is
// pread and ignores the file offset).
func extents(f *os.File, off, end int64) ([]copier.Extent, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var out []copier.Extent
	var serr error
	err = rc.Control(func(fd uintptr) {
		for pos := off; pos < end; {
			data, err := syscall.Seek(int(fd), pos, seekData)
			if errors.Is(err, syscall.ENXIO) { // only a hole up to the end
				data = end
			} else if errors.Is(err, syscall.EINVAL) && pos == off { // SEEK_DATA unsupported
				out = []copier.Extent{{Offset: off, Length: end - off}}
				return
			} else if err != nil {
				serr = err
				return
			}
			data = min(data, end)
			if data > pos {
				out = append(out, copier.Extent{Offset: pos, Length: data - pos, Zero: true})
			}
			if data >= end {
				return
			}
			hole, err := syscall.Seek(int(fd), data, seekHole)
			if err != nil {
				serr = err
				return
			}
			hole = min(hole, end)
			out = append(out, copier.Extent{Offset: data, Length: hole - data})
			pos = hole
		}
	})
	if err == nil {
		err = serr
	}
	return out, err
}

// punchHole deallocates [off, off+length), keeping the file's size.
func punchHole(f *os.File, off, length int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Fallocate(int(fd), fallocPunchHole|fallocKeepSize, off, length)
			if !errors.Is(ferr, syscall.EINTR) {
				return
			}
		}
	})
	if err == nil {
		err = ferr
	}
	return err
}
