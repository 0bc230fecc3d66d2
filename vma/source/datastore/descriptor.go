package datastore

import (
	"bytes"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

const (
	// SectorSize is the unit of a descriptor's extent sizes and offsets.
	SectorSize = 512
	// MaxDescriptorSize bounds the descriptor Open fetches: a larger backing
	// file is not a descriptor.
	MaxDescriptorSize = 64 << 10
)

// extent is the one extent of a monolithic flat disk.
type extent struct {
	// file is the data file's name as the descriptor gives it, relative to
	// the descriptor's folder, such as "vm-flat.vmdk".
	file string
	// sectors is the extent's size in sectors.
	sectors int64
	// offset is where the disk starts in file, in sectors.
	offset int64
}

// sparseCreateTypes are createType values of disks whose data is not a flat
// extent; extent lines normally say so as well.
var sparseCreateTypes = map[string]bool{
	"monolithicsparse": true, "twogbmaxextentsparse": true, "vmfssparse": true, "sesparse": true,
	"vsansparse": true, "streamoptimized": true, "vmfsrdm": true, "vmfsrawdevicemap": true,
	"vmfspassthroughrawdevicemap": true, "vmfsraw": true, "fulldevice": true, "partitioneddevice": true,
}

// parseDescriptor finds the flat extent in the first bytes of a disk's
// backing file, head, which is size bytes long (-1: unknown). Errors wrap
// ErrUnsupported (binary data, sparse and other formats, several extents,
// a child disk, encryption) or ErrDescriptor (too large, unparsable, no
// extent).
func parseDescriptor(head []byte, size int64) (extent, error) {
	switch {
	case bytes.HasPrefix(head, []byte("KDMV")):
		return extent{}, fmt.Errorf("%w: a hosted sparse disk (monolithicSparse or streamOptimized), not a descriptor", ErrUnsupported)
	case bytes.HasPrefix(head, []byte("COWD")):
		return extent{}, fmt.Errorf("%w: an ESX sparse extent (COWD), not a descriptor", ErrUnsupported)
	case bytes.IndexByte(head, 0) >= 0 || !utf8.Valid(trimPartialRune(head)):
		return extent{}, fmt.Errorf("%w: binary data, not a text descriptor: the backing looks like a data (flat) file; "+
			"the datastore source needs the disk's descriptor", ErrUnsupported)
	case size > MaxDescriptorSize || len(head) > MaxDescriptorSize:
		return extent{}, fmt.Errorf("%w: %d bytes of text, more than the %d a descriptor may have", ErrDescriptor,
			max(size, int64(len(head))), MaxDescriptorSize)
	}

	var (
		exts       []extent
		createType string
	)
	for i, line := range strings.Split(string(head), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n := i + 1
		if word, _, _ := strings.Cut(line, " "); word == "RW" || word == "RDONLY" || word == "NOACCESS" {
			e, err := parseExtent(line)
			if err != nil {
				return extent{}, fmt.Errorf("line %d: %w", n, err)
			}
			exts = append(exts, e)
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return extent{}, fmt.Errorf("%w: line %d is neither key=value nor an extent: %q", ErrDescriptor, n, clip(line))
		}
		key, val = strings.TrimSpace(key), strings.Trim(strings.TrimSpace(val), `"`)
		switch strings.ToLower(key) {
		case "createtype":
			createType = val
		case "parentfilenamehint":
			if val != "" {
				return extent{}, fmt.Errorf("%w: a child disk of %q (a snapshot delta): read the snapshot's base disk", ErrUnsupported, clip(val))
			}
		case "encryptionkeys":
			if val != "" {
				return extent{}, fmt.Errorf("%w: an encrypted disk", ErrUnsupported)
			}
		}
	}
	if sparseCreateTypes[strings.ToLower(createType)] {
		return extent{}, fmt.Errorf("%w: createType %q; only monolithic flat disks are read", ErrUnsupported, clip(createType))
	}
	if len(exts) == 0 {
		return extent{}, fmt.Errorf("%w: no extent line", ErrDescriptor)
	}
	if len(exts) > 1 {
		return extent{}, fmt.Errorf("%w: %d extents (createType %q); only a monolithic flat disk (one extent) is read",
			ErrUnsupported, len(exts), clip(createType))
	}
	return exts[0], nil
}

// parseExtent parses `ACCESS SECTORS TYPE "FILE" [OFFSET]` and accepts only
// a readable FLAT or VMFS extent.
func parseExtent(line string) (extent, error) {
	bad := func(why string) (extent, error) {
		return extent{}, fmt.Errorf("%w: extent %q: %s", ErrDescriptor, clip(line), why)
	}
	access, rest := word(line)
	size, rest := word(rest)
	typ, rest := word(rest)
	if typ == "" {
		return bad("want ACCESS SECTORS TYPE \"FILE\" [OFFSET]")
	}
	sectors, err := strconv.ParseInt(size, 10, 64)
	if err != nil || sectors <= 0 || sectors > math.MaxInt64/SectorSize {
		return bad("size is not a positive number of sectors")
	}
	switch strings.ToUpper(typ) {
	case "FLAT", "VMFS":
	case "SPARSE", "VMFSSPARSE", "SESPARSE", "VSANSPARSE":
		return extent{}, fmt.Errorf("%w: sparse extent (%s); only monolithic flat disks are read", ErrUnsupported, clip(typ))
	case "VMFSRDM", "VMFSRAW":
		return extent{}, fmt.Errorf("%w: raw device mapping extent (%s)", ErrUnsupported, clip(typ))
	default:
		return extent{}, fmt.Errorf("%w: extent type %q", ErrUnsupported, clip(typ))
	}
	if access == "NOACCESS" {
		return extent{}, fmt.Errorf("%w: extent %q is NOACCESS", ErrUnsupported, clip(line))
	}
	rest = strings.TrimSpace(rest)
	if !strings.HasPrefix(rest, `"`) {
		return bad("no quoted file name")
	}
	name, tail, ok := strings.Cut(rest[1:], `"`)
	if !ok {
		return bad("unterminated file name")
	}
	if name == "" || path.IsAbs(name) || strings.HasPrefix(path.Clean(name), "..") {
		return bad("file name must be relative to the descriptor's folder")
	}
	var offset int64
	if tail = strings.TrimSpace(tail); tail != "" {
		offset, err = strconv.ParseInt(tail, 10, 64)
		if err != nil || offset < 0 || offset > math.MaxInt64/SectorSize-sectors {
			return bad("offset is not a number of sectors")
		}
	}
	return extent{file: name, sectors: sectors, offset: offset}, nil
}

// word splits the first space-separated word off s.
func word(s string) (w, rest string) {
	w, rest, _ = strings.Cut(strings.TrimLeft(s, " \t"), " ")
	return w, rest
}

// trimPartialRune drops an incomplete UTF-8 sequence at the end of b, which
// a bounded read may cut.
func trimPartialRune(b []byte) []byte {
	for i := 1; i < utf8.UTFMax && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			break
		}
	}
	return b
}

// clip shortens s for an error message.
func clip(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
