package datastore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/godwit/godwit/vma/copier"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
)

var _ copier.Source = (*Disk)(nil)

// idleConnsPerHost is how many idle connections Disk's transport keeps to
// vCenter: more than copier.DefaultDepth, so requests in flight reuse them
// instead of opening a TLS connection each (net/http's default keeps 2).
const idleConnsPerHost = 2 * copier.DefaultDepth

// Disk is a VM disk's flat data file read through vCenter's datastore
// endpoint: a copier.Source. It is safe for concurrent use. Close it when
// done.
type Disk struct {
	client *http.Client
	tr     *http.Transport
	ua     string // the SDK client's User-Agent; "" leaves net/http's
	url    string // the data file's /folder URL; never holds credentials
	file   string // the data file as "[ds] dir/name-flat.vmdk"
	base   int64  // where the disk starts in the file, in bytes
	size   int64
}

// Open opens the disk whose backing is the descriptor at backing ("[ds]
// dir/disk.vmdk") on a datastore of the datacenter at dcPath (its inventory
// path such as "DC0" or "/Folder/DC0", what the endpoint's dcPath
// parameter takes; vCenter needs it), with capacity bytes. c must be logged
// in: every request goes to its host, trusts what it trusts and carries the
// cookies of its jar as they are then (a later re-login is picked up), over
// a copy of its transport that Disk owns; c itself is not changed.
//
// Open reads the descriptor and, to check that the data file is there and
// long enough, the disk's last byte. Errors wrap ErrUnsupported (not a
// monolithic flat disk, or backing is a data file), ErrDescriptor (too
// large, unparsable, or an extent that is not capacity bytes), ErrNotFound
// (no such datacenter, datastore or file), or are a *StatusError or the
// transport's error; ctx's error when it ends first.
func Open(ctx context.Context, c *vim25.Client, dcPath, backing string, capacity int64) (*Disk, error) {
	var dp object.DatastorePath
	if !dp.FromString(backing) || dp.Datastore == "" || dp.Path == "" {
		return nil, fmt.Errorf("open disk %q: not a datastore path such as \"[ds] vm/vm.vmdk\"", backing)
	}
	if capacity <= 0 {
		return nil, fmt.Errorf("open disk %s: capacity %d", backing, capacity)
	}
	if c == nil || c.Client == nil {
		return nil, fmt.Errorf("open disk %s: no vCenter client", backing)
	}
	sc := c.Client
	d, err := newDisk(sc)
	if err != nil {
		return nil, fmt.Errorf("open disk %s: %w", backing, err)
	}
	dsURL := func(p string) string {
		return object.NewDatastoreURL(*sc.URL(), dcPath, dp.Datastore, p).String()
	}

	desc, err := d.descriptor(ctx, dsURL(dp.Path), backing)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("open disk %s: descriptor: %w", backing, err)
	}
	ext, err := parseDescriptor(desc.head, desc.size)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("open disk %s: %w", backing, err)
	}
	if ext.sectors*SectorSize != capacity {
		d.Close()
		return nil, fmt.Errorf("open disk %s: %w: its extent %q is %d bytes, the disk's capacity is %d",
			backing, ErrDescriptor, ext.file, ext.sectors*SectorSize, capacity)
	}
	p := path.Join(path.Dir(dp.Path), ext.file)
	d.url = dsURL(p)
	d.file = (&object.DatastorePath{Datastore: dp.Datastore, Path: p}).String()
	d.base, d.size = ext.offset*SectorSize, capacity

	var last [1]byte
	if err := d.ReadAt(ctx, last[:], capacity-1); err != nil {
		d.Close()
		var se *StatusError
		if errors.As(err, &se) && se.Code == http.StatusRequestedRangeNotSatisfiable {
			return nil, fmt.Errorf("open disk %s: data file %s is shorter than the disk's %d bytes: %w", backing, d.file, capacity, err)
		}
		return nil, fmt.Errorf("open disk %s: data file: %w", backing, err)
	}
	return d, nil
}

// newDisk returns a Disk without a file that sends requests as sc does: its
// cookies, its TLS trust and dialers, over a copy of its transport that
// keeps idleConnsPerHost idle connections.
func newDisk(sc *soap.Client) (*Disk, error) {
	tr := sc.DefaultTransport()
	if tr == nil {
		var ok bool
		if tr, ok = sc.Client.Transport.(*http.Transport); !ok {
			return nil, fmt.Errorf("the vCenter client's transport is a %T, not an *http.Transport", sc.Client.Transport)
		}
	}
	tr = tr.Clone()
	tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, idleConnsPerHost)
	if tr.MaxIdleConns != 0 {
		tr.MaxIdleConns = max(tr.MaxIdleConns, idleConnsPerHost)
	}
	return &Disk{client: &http.Client{Transport: tr, Jar: sc.Jar}, tr: tr, ua: sc.UserAgent}, nil
}

// Size returns the disk's capacity in bytes.
func (d *Disk) Size() int64 { return d.size }

// File returns the data file read, as "[ds] dir/name-flat.vmdk".
func (d *Disk) File() string { return d.file }

// Close closes the idle connections of Disk's transport. Reads in flight
// are not interrupted; cancel their contexts for that.
func (d *Disk) Close() error {
	d.tr.CloseIdleConnections()
	return nil
}

// ReadAt fills p with the disk's bytes from off with one ranged GET, reading
// the body straight into p. A read not within the disk wraps ErrOutOfRange
// and sends nothing. An answer other than 206 with the matching
// Content-Range and len(p) bytes is an error naming the file, the offset
// and the status: a *StatusError (a 404 matches ErrNotFound), or a short
// body wrapping io.ErrUnexpectedEOF. A 200 for a range starting at the
// file's offset 0 is accepted: its body starts with the bytes asked for.
// Cancelling ctx aborts the request, also while its body is being read.
func (d *Disk) ReadAt(ctx context.Context, p []byte, off int64) error {
	if off < 0 || int64(len(p)) > d.size-off {
		return fmt.Errorf("read %s: %w: %d bytes at offset %d of a %d-byte disk", d.file, ErrOutOfRange, len(p), off, d.size)
	}
	if len(p) == 0 {
		return nil
	}
	return d.read(ctx, p, d.base+off)
}

// read fills p from the data file's offset off.
func (d *Disk) read(ctx context.Context, p []byte, off int64) error {
	last := off + int64(len(p)) - 1
	res, err := d.get(ctx, d.url, off, last)
	if err != nil {
		return fmt.Errorf("read %s at offset %d: %w", d.file, off, err)
	}
	defer res.Body.Close()
	statusErr := func(detail string, args ...any) error {
		return &StatusError{File: d.file, Offset: off, Code: res.StatusCode, Status: res.Status, Detail: fmt.Sprintf(detail, args...)}
	}
	switch res.StatusCode {
	case http.StatusPartialContent:
		cr := res.Header.Get("Content-Range")
		if first, l, _, ok := parseContentRange(cr); !ok || first != off || l != last {
			return statusErr("Content-Range %q, want bytes %d-%d/*", cr, off, last)
		}
		if res.ContentLength >= 0 && res.ContentLength != int64(len(p)) {
			return statusErr("Content-Length %d, want %d", res.ContentLength, len(p))
		}
	case http.StatusOK:
		// The whole file, from its start: only usable for a range that
		// starts there (discarding up to off bytes first is not).
		if res.ContentLength >= 0 && res.ContentLength <= last {
			return statusErr("the file is %d bytes, the range ends at %d", res.ContentLength, last)
		}
		if off != 0 {
			return statusErr("the server ignored the Range header")
		}
	case http.StatusRequestedRangeNotSatisfiable:
		return statusErr("range %d-%d, the server's Content-Range is %q", off, last, res.Header.Get("Content-Range"))
	default:
		return statusErr("")
	}
	if n, err := io.ReadFull(res.Body, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read %s at offset %d: got %d of %d bytes: %w", d.file, off, n, len(p), err)
	}
	if res.StatusCode == http.StatusPartialContent {
		// Normally EOF without I/O (net/http returns it with the last
		// bytes of a Content-Length body), which also frees the connection.
		var extra [1]byte
		if n, _ := res.Body.Read(extra[:]); n > 0 {
			return statusErr("the body is longer than the %d bytes asked for", len(p))
		}
	}
	return nil
}

// get sends a GET of bytes first-last of u (last -1: to the end).
func (d *Disk) get(ctx context.Context, u string, first, last int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	r := "bytes=" + strconv.FormatInt(first, 10) + "-"
	if last >= 0 {
		r += strconv.FormatInt(last, 10)
	}
	req.Header.Set("Range", r)
	if d.ua != "" {
		req.Header.Set("User-Agent", d.ua)
	}
	res, err := d.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the caller names the file; the URL adds nothing
		}
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", context.Cause(ctx), err)
		}
		return nil, err
	}
	return res, nil
}

// head is the start of a backing file and the file's size (-1: unknown).
type head struct {
	head []byte
	size int64
}

// descriptor reads at most MaxDescriptorSize+1 bytes of the backing file,
// so that parseDescriptor can tell a larger file.
func (d *Disk) descriptor(ctx context.Context, u, file string) (head, error) {
	res, err := d.get(ctx, u, 0, MaxDescriptorSize)
	if err != nil {
		return head{}, err
	}
	defer res.Body.Close()
	h := head{size: -1}
	switch res.StatusCode {
	case http.StatusPartialContent:
		_, _, h.size, _ = parseContentRange(res.Header.Get("Content-Range"))
	case http.StatusOK:
		h.size = res.ContentLength
	case http.StatusRequestedRangeNotSatisfiable: // an empty file
		return head{}, fmt.Errorf("%w: %s is empty", ErrDescriptor, file)
	default:
		return head{}, &StatusError{File: file, Code: res.StatusCode, Status: res.Status}
	}
	h.head, err = io.ReadAll(io.LimitReader(res.Body, MaxDescriptorSize+1))
	if err != nil {
		return head{}, fmt.Errorf("read %s: %w", file, err)
	}
	if len(h.head) == 0 {
		return head{}, fmt.Errorf("%w: %s is empty", ErrDescriptor, file)
	}
	return h, nil
}

// parseContentRange parses "bytes FIRST-LAST/TOTAL"; total is -1 for "*".
func parseContentRange(s string) (first, last, total int64, ok bool) {
	s, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(s, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	first, err1 = strconv.ParseInt(a, 10, 64)
	last, err2 = strconv.ParseInt(b, 10, 64)
	total = -1
	if tot != "*" {
		total, err3 = strconv.ParseInt(tot, 10, 64)
	}
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first || (total >= 0 && last >= total) {
		return 0, 0, 0, false
	}
	return first, last, total, true
}
