// Package file is a local file as a copier.Source and a copier.Destination:
// the source tells its holes (SEEK_DATA/SEEK_HOLE on Linux), the destination
// stays sparse (WriteZeroes punches holes) and Flush fsyncs.
package file

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/godwit/godwit/vma/copier"
)

var (
	_ copier.Source      = (*Source)(nil)
	_ copier.Extents     = (*Source)(nil)
	_ copier.Destination = (*Destination)(nil)
	_ copier.Source      = (*Destination)(nil) // read back by Config.Verify
)

// Source reads a file. It is safe for concurrent use. Close it when done.
type Source struct {
	f    *os.File
	size int64
}

// Open opens path for reading; its size is fixed at Open.
func Open(path string) (*Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Source{f: f, size: st.Size()}, nil
}

// Size returns the file's size at Open.
func (s *Source) Size() int64 { return s.size }

// ReadAt fills p from off; reading past the end is io.ErrUnexpectedEOF.
func (s *Source) ReadAt(_ context.Context, p []byte, off int64) error {
	return readFull(s.f, p, off)
}

// readFull fills p from off of f.
func readFull(f *os.File, p []byte, off int64) error {
	n, err := f.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Extents describes [off, off+length) as data and holes. Where the file
// system cannot tell, everything is data.
func (s *Source) Extents(_ context.Context, off, length int64) ([]copier.Extent, error) {
	end := min(off+length, s.size)
	if off >= end {
		return nil, fmt.Errorf("extents [%d, %d) of a %d-byte file", off, off+length, s.size)
	}
	return extents(s.f, off, end)
}

// Close closes the file.
func (s *Source) Close() error { return s.f.Close() }

// Destination writes a file sparsely, and reads it back (a copier.Source
// too, for Config.Verify). It is safe for concurrent use. Close it when
// done.
type Destination struct {
	f    *os.File
	size int64
}

// Create opens path for writing, creating it (mode 0600) if needed, and
// sets its size to size. Existing content below size stays, so a copy can
// resume into it.
func Create(path string, size int64) (*Destination, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && st.Size() != size {
		err = f.Truncate(size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Destination{f: f, size: size}, nil
}

// Size returns the file's size set by Create.
func (d *Destination) Size() int64 { return d.size }

// ReadAt fills p from off; reading past the end is io.ErrUnexpectedEOF.
func (d *Destination) ReadAt(_ context.Context, p []byte, off int64) error {
	return readFull(d.f, p, off)
}

// WriteAt writes p at off.
func (d *Destination) WriteAt(_ context.Context, p []byte, off int64) error {
	_, err := d.f.WriteAt(p, off)
	return err
}

// WriteZeroes makes [off, off+length) read as zeros: it punches a hole,
// or writes zeros where the file system cannot.
func (d *Destination) WriteZeroes(ctx context.Context, off, length int64) error {
	if punchHole(d.f, off, length) == nil {
		return nil
	}
	zeros := make([]byte, min(length, 1<<20))
	for length > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(length, int64(len(zeros)))
		if _, err := d.f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

// Flush fsyncs the file.
func (d *Destination) Flush(context.Context) error { return d.f.Sync() }

// Close closes the file.
func (d *Destination) Close() error { return d.f.Close() }
