package vcsim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// DefaultDiskData is Config.DiskData's default: how many bytes of content a
// new disk of the seed and generated VMs gets.
const DefaultDiskData = 4 << 20

// SectorSize is the size of a disk sector, the unit of the pattern at the
// end of a disk (see DiskPattern).
const SectorSize = 512

// diskPiece is how a disk's content is laid out: n bytes at off, random
// unless pattern.
type diskPiece struct {
	off, n  int64
	pattern bool
}

// diskLayout places amount bytes in a disk of capacity bytes: a quarter of
// it each at the start, a third and two thirds in (rounded down to MiB), all
// pseudo-random, and at the very end the pattern of DiskPattern. Pieces are
// multiples of 4 KiB, at least 4 KiB, and at most an eighth of the disk.
func diskLayout(capacity, amount int64) []diskPiece {
	const block, mib = 4 << 10, 1 << 20
	n := max(amount/4/block*block, block)
	n = min(n, capacity/8/block*block)
	if n <= 0 {
		return nil
	}
	return []diskPiece{
		{off: 0, n: n},
		{off: capacity / 3 / mib * mib, n: n},
		{off: 2 * capacity / 3 / mib * mib, n: n},
		{off: capacity - n, n: n, pattern: true},
	}
}

// DiskPattern is the sector at byte offset off of the recognisable pattern
// that ends the content of a new disk: a line naming the VM, the disk key
// and the sector number, padded with dots to SectorSize bytes.
func DiskPattern(vm string, key int32, off int64) []byte {
	line := fmt.Sprintf("godwit vcsim %s disk %d sector %d\n", vm, key, off/SectorSize)
	b := bytes.Repeat([]byte{'.'}, SectorSize)
	copy(b, line)
	b[SectorSize-1] = '\n'
	return b
}

// fillDisk gives the flat file of a new disk its content: when the file is
// empty it is truncated to capacity and gets amount bytes of content
// derived from the VM's name and the disk's key (see diskLayout); amount <=
// 0 only truncates. A file that is not empty is left as it is; a missing
// one (a descriptor left without it) is created.
func fillDisk(file string, capacity int64, vm string, key int32, amount int64) error {
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open disk: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat disk: %w", err)
	}
	if st.Size() != 0 {
		return nil
	}
	if err := f.Truncate(capacity); err != nil {
		return fmt.Errorf("size disk: %w", err)
	}
	if amount > 0 {
		src := newBlockSource(vm, key)
		for i, p := range diskLayout(capacity, amount) {
			buf := make([]byte, p.n)
			if p.pattern {
				for s := int64(0); s < p.n; s += SectorSize {
					copy(buf[s:], DiskPattern(vm, key, p.off+s))
				}
			} else {
				src.fill(buf, p.off)
				if i == 0 && p.n >= 3*blockSize {
					// A block of zeros that is allocated: copies must find
					// zeros inside data, not only in holes.
					clear(buf[p.n/2/blockSize*blockSize:][:blockSize])
				}
			}
			if _, err := f.WriteAt(buf, p.off); err != nil {
				return fmt.Errorf("write disk at %d: %w", p.off, err)
			}
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close disk: %w", err)
	}
	return nil
}

// blockSize is the unit of a disk's pseudo-random content.
const blockSize = 4 << 10

// blockSource makes a disk's pseudo-random content cheaply (generating
// megabytes with a PRNG is slow under the race detector): a block at a
// given offset is a slice of a small random pool, chosen by a hash of the
// offset, with the offset written over its first 8 bytes, so that no two
// blocks are alike and a block copied to the wrong place shows.
type blockSource struct {
	pool []byte
	salt uint64
}

func newBlockSource(vm string, key int32) *blockSource {
	seed := sha256.Sum256(fmt.Appendf(nil, "godwit vcsim\x00%s\x00%d", vm, key))
	src := &blockSource{pool: make([]byte, 64<<10+blockSize), salt: binary.LittleEndian.Uint64(seed[:8])}
	_, _ = rand.NewChaCha8(seed).Read(src.pool) // never fails
	return src
}

// fill fills buf, the content at disk offset off, a multiple of blockSize.
func (s *blockSource) fill(buf []byte, off int64) {
	for b := 0; b < len(buf); b += blockSize {
		o := uint64(off) + uint64(b)
		h := (o/blockSize ^ s.salt) * 0x9e3779b97f4a7c15 // Fibonacci hashing
		start := (h >> 32) % uint64(len(s.pool)-blockSize)
		n := copy(buf[b:min(b+blockSize, len(buf))], s.pool[start:])
		if n >= 8 {
			binary.LittleEndian.PutUint64(buf[b:], o)
		}
	}
}

// fillDisks fills the new disks of vm (see fillDisk).
func fillDisks(ctx context.Context, vm *object.VirtualMachine, name, dsDir string, amount int64) error {
	var o mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"config.hardware.device"}, &o); err != nil {
		return fmt.Errorf("read devices: %w", err)
	}
	for _, d := range object.VirtualDeviceList(o.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
		disk := d.(*types.VirtualDisk)
		file, err := diskFlatFile(disk, dsDir)
		if err != nil {
			return err
		}
		if err := fillDisk(file, disk.CapacityInBytes, name, disk.Key, amount); err != nil {
			return fmt.Errorf("disk %d: %w", disk.Key, err)
		}
	}
	return nil
}

// diskFlatFile is the local path of a disk's flat file on the datastore
// whose directory is dsDir.
func diskFlatFile(disk *types.VirtualDisk, dsDir string) (string, error) {
	b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo)
	if !ok {
		return "", fmt.Errorf("disk %d has no file backing", disk.Key)
	}
	var p object.DatastorePath
	name := b.GetVirtualDeviceFileBackingInfo().FileName
	if !p.FromString(name) {
		return "", fmt.Errorf("disk %d: %q is no datastore path", disk.Key, name)
	}
	if p.Datastore != DatastoreName {
		return "", fmt.Errorf("disk %d: %s is not on %s", disk.Key, name, DatastoreName)
	}
	return flatFile(dsDir, p.Path), nil
}

// DiskFile returns the local path of the flat file that holds the disk
// with device key key of the VM at inventory path vmPath (such as
// /DatabanxDC/vm/PGWINTESTBIOS). The file is the disk's content: tests may
// write into it. Errors: the VM is not found, it has no such disk, or the
// disk is not on the simulator's datastore.
func (s *Simulator) DiskFile(ctx context.Context, vmPath string, key int32) (string, error) {
	u := *s.URL
	u.User = url.UserPassword(s.Username, s.Password)
	c, err := govmomi.NewClient(ctx, &u, true)
	if err != nil {
		return "", fmt.Errorf("disk file: log in: %w", err)
	}
	defer func() { _ = c.Logout(context.WithoutCancel(ctx)) }()
	vm, err := find.NewFinder(c.Client, false).VirtualMachine(ctx, vmPath)
	if err != nil {
		return "", fmt.Errorf("disk file: %w", err)
	}
	devices, err := vm.Device(ctx)
	if err != nil {
		return "", fmt.Errorf("disk file: devices of %s: %w", vmPath, err)
	}
	disk, ok := devices.FindByKey(key).(*types.VirtualDisk)
	if !ok {
		return "", fmt.Errorf("disk file: %s has no disk with key %d", vmPath, key)
	}
	file, err := diskFlatFile(disk, s.DatastoreDir)
	if err != nil {
		return "", fmt.Errorf("disk file: %s: %w", vmPath, err)
	}
	return file, nil
}

// imageDisk writes the raw image into the first disk of vm, sparsely: the
// image's runs of zeros are not written.
func imageDisk(ctx context.Context, vm *object.VirtualMachine, dsDir, image string) error {
	var o mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"config.hardware.device"}, &o); err != nil {
		return fmt.Errorf("read devices: %w", err)
	}
	disks := object.VirtualDeviceList(o.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil))
	if len(disks) == 0 {
		return fmt.Errorf("image %s: the VM has no disk", image)
	}
	disk := disks[0].(*types.VirtualDisk)
	file, err := diskFlatFile(disk, dsDir)
	if err != nil {
		return err
	}
	src, err := os.Open(image)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	defer src.Close()
	if st, err := src.Stat(); err != nil {
		return fmt.Errorf("image: %w", err)
	} else if st.Size() > disk.CapacityInBytes {
		return fmt.Errorf("image %s (%d bytes) is larger than disk %d (%d bytes)", image, st.Size(), disk.Key, disk.CapacityInBytes)
	}
	dst, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	defer dst.Close()
	buf := make([]byte, 1<<20)
	for off := int64(0); ; {
		n, err := io.ReadFull(src, buf)
		if n > 0 && !bytes.Equal(buf[:n], make([]byte, n)) {
			if _, werr := dst.WriteAt(buf[:n], off); werr != nil {
				return fmt.Errorf("image into %s: %w", file, werr)
			}
		}
		off += int64(n)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return dst.Close()
		}
		if err != nil {
			return fmt.Errorf("image %s: %w", image, err)
		}
	}
}
