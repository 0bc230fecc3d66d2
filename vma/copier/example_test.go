package copier_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/copier/file"
)

// Copy a 4 MiB file holding 11 bytes into a new sparse file: only the
// first 4 KiB block is data to the file system, the rest is never read.
func Example() {
	dir, _ := os.MkdirTemp("", "copier-example")
	defer os.RemoveAll(dir)
	f, _ := os.Create(filepath.Join(dir, "disk.raw"))
	f.Truncate(4 << 20)
	f.WriteAt(make([]byte, 1<<20), 1<<20) // allocated, but zeros
	f.WriteAt([]byte("boot sector"), 0)
	f.Close()

	src, _ := file.Open(filepath.Join(dir, "disk.raw"))
	defer src.Close()
	dst, _ := file.Create(filepath.Join(dir, "copy.raw"), src.Size())
	defer dst.Close()

	lim := copier.NewLimiter(0, nil) // unlimited; SetRate may change it meanwhile
	res, err := copier.Copy(context.Background(), dst, src,
		[]copier.Area{{Offset: 0, Length: src.Size()}},
		copier.Config{Depth: 4, RequestSize: 1 << 20, TargetIsZero: true, Limiter: lim})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("done %d of %d, %d zero, checkpoint %d\n", res.Done, res.Total, res.Zero, res.Checkpoint)
	// Output: done 4194304 of 4194304, 4190208 zero, checkpoint 4194304
}
