package tunnel_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/copier/export"
	"github.com/godwit/godwit/vma/copier/file"
	"github.com/godwit/godwit/vma/nbd"
	"github.com/godwit/godwit/vma/nbd/nbdtest"
	"github.com/godwit/godwit/vma/tunnel/tunneltest"
)

// BenchmarkCopyThroughSSH copies 1 GiB of random data from a local file
// into an nbdkit memory export on the far side of a real OpenSSH sshd:
// godwit's copier through the in-process tunnel, against nbdcopy through
// an OpenSSH `ssh -N -L` tunnel to the same sshd with the same cipher
// (aes128-gcm@openssh.com), in alternating runs. The metrics are the
// medians and the ratio nbdcopy / godwit (above 1: godwit is faster).
//
//	go test -run '^$' -bench CopyThroughSSH -benchtime 5x ./vma/tunnel
func BenchmarkCopyThroughSSH(b *testing.B) {
	const size = 1 << 30
	const cipher = "aes128-gcm@openssh.com"
	for _, tool := range []string{"nbdcopy", "ssh"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s is missing: %v", tool, err)
		}
	}
	src := filepath.Join(b.TempDir(), "source.raw")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{7})
	buf := make([]byte, 8<<20)
	for off := 0; off < size; off += len(buf) {
		rng.Read(buf)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()

	tgt := nbdtest.StartTCP(b, "memory", "size=1G")
	r := newRig(b, tgt.Addr)
	cfg := r.config(b)
	cfg.Ciphers, cfg.Logger = []string{cipher}, slog.New(slog.DiscardHandler)
	tun := run(b, cfg)

	// The peer's tunnel: OpenSSH's client, same sshd, same key, same cipher.
	peerURI := "nbd://" + sshForward(b, r, cipher, tgt.Addr) + "/"

	ctx := context.Background()
	godwit := func() float64 {
		start := time.Now()
		s, err := file.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		d, err := export.Open(ctx, tgt.URI, 1, nbd.Config{Dial: tun.DialContext})
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		if _, err := copier.Copy(ctx, d, s, []copier.Area{{Offset: 0, Length: size}}, copier.Config{}); err != nil {
			b.Fatal(err)
		}
		return time.Since(start).Seconds()
	}
	peer := func() float64 {
		start := time.Now()
		if out, err := exec.Command("nbdcopy", src, peerURI).CombinedOutput(); err != nil {
			b.Fatalf("nbdcopy: %v\n%s", err, out)
		}
		return time.Since(start).Seconds()
	}
	var ours, theirs []float64
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			ours, theirs = append(ours, godwit()), append(theirs, peer())
		} else {
			theirs, ours = append(theirs, peer()), append(ours, godwit())
		}
	}
	o, p := median(ours), median(theirs)
	b.ReportMetric(o, "godwit-s")
	b.ReportMetric(p, "nbdcopy-ssh-s")
	b.ReportMetric(p/o, "nbdcopy/godwit")
	b.ReportMetric(float64(size)/o/1e6, "godwit-MB/s")
}

// sshForward starts OpenSSH's `ssh -N -L` to r's sshd with r's key and cipher, forwarding a
// free local port to target (host:port as seen from the sshd), waits until it listens and
// returns its address; cleanup kills it.
func sshForward(tb testing.TB, r *rig, cipher, target string) string {
	tb.Helper()
	lport := tunneltest.FreePort(tb)
	host, port, _ := net.SplitHostPort(r.sshd.Addr)
	ssh := exec.Command("ssh", "-N", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile="+r.sshd.KnownHosts, "-o", "ExitOnForwardFailure=yes", "-c", cipher,
		"-i", r.keyFile, "-p", port, "-L", fmt.Sprintf("127.0.0.1:%d:%s", lport, target), r.sshd.User+"@"+host)
	ssh.Stderr = io.Discard
	if err := ssh.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ssh.Process.Kill(); ssh.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", lport)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			tb.Fatalf("ssh -L did not listen: %v", err)
		}
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
