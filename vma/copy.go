package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/godwit/godwit/bytesize"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/copier/export"
	"github.com/godwit/godwit/vma/copier/file"
	"github.com/godwit/godwit/vma/nbd"
)

// copyUsage documents `vma copy`.
const copyUsage = `Usage: vma copy [flags] SRC DST

Copies SRC to DST, like nbdcopy: each an NBD URI (nbd://host[:port]/export,
nbd+unix:///export?socket=PATH) or a local file (a file target is written
sparse, created when missing). Zero areas are never sent as data. The exit
status is 0 only when every byte is written and flushed. With -verify, the
target is then read back and compared with what was read from the source
(nbdcopy has no such option), and "verified sha256:HEX" (the source's
digest) is printed on stdout; a mismatch names the offset of the first
block (of 1 MiB or more) that differs.

Flags:
`

// copyConfig is the command line of vma copy.
type copyConfig struct {
	requests, connections int
	requestSize, rate     string
	progress              bool
	targetIsZero, flush   bool
	verify                bool
}

// copyCmd implements `vma copy SRC DST`.
func copyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg copyConfig
	fs := flag.NewFlagSet("vma copy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), copyUsage)
		fs.PrintDefaults()
	}
	fs.IntVar(&cfg.requests, "requests", copier.DefaultDepth, "requests in flight")
	fs.StringVar(&cfg.requestSize, "request-size", "1M", "largest request, bytes (K, M suffixes)")
	fs.IntVar(&cfg.connections, "connections", 1, "NBD connections per export, when the server offers multi-conn (one carries the requests in flight; more help only with spare cores)")
	fs.StringVar(&cfg.rate, "rate", "", "bandwidth limit in bytes per second (K, M, G suffixes); empty: none")
	fs.BoolVar(&cfg.progress, "progress", false, "report progress on stderr: a bar on a terminal, else JSON lines")
	fs.BoolVar(&cfg.targetIsZero, "target-is-zero", false, "the target reads as zeros: skip zero areas")
	fs.BoolVar(&cfg.verify, "verify", false, "read the target back after the flush and check it against the source; print its sha256")
	fs.BoolVar(&cfg.flush, "flush", true, "flush the target at the end (always done; -flush=false is refused)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.Usage()
		return fmt.Errorf("copy: want SRC and DST, got %d arguments", len(pos))
	}
	if !cfg.flush {
		return errors.New("copy: -flush=false: a copy is done only once the target flushed it")
	}
	size, err := bytesize.Parse(cfg.requestSize)
	if err != nil || size < 512 || size > copier.MaxRequestSize {
		return fmt.Errorf("copy: -request-size %q: want 512 to %d bytes", cfg.requestSize, copier.MaxRequestSize)
	}
	if cfg.requests < 1 || cfg.connections < 1 {
		return errors.New("copy: -requests and -connections must be at least 1")
	}
	cc := copier.Config{Depth: cfg.requests, RequestSize: int(size), TargetIsZero: cfg.targetIsZero, Verify: cfg.verify}
	if cfg.rate != "" {
		r, err := bytesize.Parse(cfg.rate)
		if err != nil || r < 1 {
			return fmt.Errorf("copy: -rate %q: want bytes per second, such as 100M", cfg.rate)
		}
		cc.Limiter = copier.NewLimiter(r, nil)
	}

	src, closeSrc, err := openSource(ctx, pos[0], cfg.connections)
	if err != nil {
		return fmt.Errorf("copy: source %s: %w", pos[0], err)
	}
	defer closeSrc()
	dst, dstSize, closeDst, err := openDestination(ctx, pos[1], src.Size(), cfg.connections)
	if err != nil {
		return fmt.Errorf("copy: destination %s: %w", pos[1], err)
	}
	defer closeDst()
	if dstSize < src.Size() {
		return fmt.Errorf("copy: destination %s holds %d bytes, less than the source's %d", pos[1], dstSize, src.Size())
	}
	if cfg.progress {
		cc.Progress = progressPrinter(stderr)
	}
	start := time.Now()
	res, err := copier.Copy(ctx, dst, src, []copier.Area{{Offset: 0, Length: src.Size()}}, cc)
	if cfg.progress {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		return fmt.Errorf("copy: %w (every byte below %d is written and acknowledged)", err, res.Checkpoint)
	}
	took := time.Since(start)
	if cfg.progress {
		fmt.Fprintf(stderr, "copied %d bytes (%d of them zero) in %s: %.1f MB/s\n", res.Done, res.Zero, took.Round(time.Millisecond), float64(res.Done)/took.Seconds()/1e6)
	}
	if res.Verified {
		fmt.Fprintf(stdout, "verified sha256:%x\n", res.Digest)
	}
	return nil
}

// copySource is what vma copy reads from.
type copySource interface {
	copier.Source
	copier.Extents
}

// isNBD reports whether s is an NBD URI rather than a file name.
func isNBD(s string) bool {
	return strings.HasPrefix(s, "nbd://") || strings.HasPrefix(s, "nbd+unix://")
}

func openSource(ctx context.Context, s string, conns int) (copySource, func(), error) {
	if isNBD(s) {
		e, err := export.Open(ctx, s, conns, nbd.Config{})
		if err != nil {
			return nil, nil, err
		}
		return e, func() { _ = e.Close() }, nil
	}
	f, err := file.Open(s)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { _ = f.Close() }, nil
}

func openDestination(ctx context.Context, s string, size int64, conns int) (copier.Destination, int64, func(), error) {
	if isNBD(s) {
		e, err := export.Open(ctx, s, conns, nbd.Config{})
		if err != nil {
			return nil, 0, nil, err
		}
		return e, e.Size(), func() { _ = e.Close() }, nil
	}
	f, err := file.Create(s, size)
	if err != nil {
		return nil, 0, nil, err
	}
	return f, size, func() { _ = f.Close() }, nil
}

// progressPrinter reports progress as one bar line rewritten in place on
// a terminal, or as JSON lines elsewhere.
func progressPrinter(w io.Writer) func(copier.Progress) {
	terminal := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			terminal = true
		}
	}
	enc := json.NewEncoder(w)
	return func(p copier.Progress) {
		if !terminal {
			_ = enc.Encode(map[string]any{"total": p.Total, "done": p.Done, "zero": p.Zero, "checkpoint": p.Checkpoint,
				"verified": p.Verified, "rate": int64(p.Rate), "avg_rate": int64(p.AvgRate), "elapsed_seconds": p.Elapsed.Seconds()})
			return
		}
		pct, what := 100.0, "copy  "
		if p.Verified > 0 {
			what = "verify"
		}
		if p.Total > 0 {
			pct = 100 * float64(p.Done) / float64(p.Total)
			if p.Verified > 0 {
				pct = 100 * float64(p.Verified) / float64(p.Total)
			}
		}
		const width = 30
		bar := strings.Repeat("#", int(pct*width/100)) + strings.Repeat(".", width-int(pct*width/100))
		fmt.Fprintf(w, "\r%s [%s] %5.1f%% %8.1f MB/s", what, bar, pct, p.Rate/1e6)
	}
}

// parseInterleaved parses flags that may come before, between or after
// the positional arguments, as nbdcopy allows, and returns the latter.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
