package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/godwit/godwit/vma/tunnel"
	"github.com/godwit/godwit/vma/vcsim"
)

// wanLinks are the links of issue 18 that BenchmarkWAN measures, each its
// own sub-benchmark (-bench 'WAN/100mbit' runs one). delay is one way.
var wanLinks = []struct {
	name, rate  string
	bytesPerSec float64
	delay       time.Duration
}{
	{"1gbit-20ms", "1gbit", 125e6, 10 * time.Millisecond},
	{"1gbit-100ms", "1gbit", 125e6, 50 * time.Millisecond},
	{"100mbit-80ms", "100mbit", 12.5e6, 40 * time.Millisecond},
}

// The two ends of the emulated link, and the ports on each: in namespaces
// of their own, the documented defaults collide with nothing on the host.
const (
	wanOMAAddr    = "10.77.0.1"
	wanVMAAddr    = "10.77.0.2"
	wanOMAAPI     = "127.0.0.1:8082"
	wanNATS       = "127.0.0.1:4222"
	wanNBDPorts   = "10100-10199"
	wanSSHPort    = "2222"
	wanVMAAPIPort = "9081"
	wanVMAAPI     = "127.0.0.1:8081"
	wanVCenter    = "127.0.0.1:8989"
	wanForward    = "127.0.0.1:10300" // ssh -L on the VMA's side
	wanVM         = "bench-wan"
)

// Environment of BenchmarkWAN (the Makefile's bench-wan passes them on).
const (
	// wanEnvDisk is the size of the VM's one disk, all random data: 1G
	// when unset; 2G-4G for figures worth a table.
	wanEnvDisk = "GODWIT_BENCH_DISK"
	// wanEnvVMAFlags are more vma flags, split on spaces.
	wanEnvVMAFlags = "GODWIT_BENCH_VMA_FLAGS"
	// wanEnvNBDConnections, when set, is passed as vma -nbd-connections.
	wanEnvNBDConnections = "GODWIT_BENCH_NBD_CONNECTIONS"
	// wanEnvPeer, when "off", skips nbdcopy (exploring the job alone: its
	// ratio is then not reported).
	wanEnvPeer = "GODWIT_BENCH_NBDCOPY"
	// wanEnvLogs, when set, is a directory (made if missing; the logs must
	// not be in it yet) the processes' logs are copied into before the
	// bench removes its own.
	wanEnvLogs = "GODWIT_BENCH_LOGS"
	// wanEnvBin is the directory of oma, vma and wanlink (default ../bin).
	wanEnvBin = "GODWIT_BENCH_BIN"
	// wanEnvVCSim makes the test binary the VMA side's vCenter (see
	// TestMain): its value is the directory to work in.
	wanEnvVCSim = "GODWIT_E2E_WAN_VCSIM"
)

// TestMain runs the tests, or, started by BenchmarkWAN with wanEnvVCSim
// set, the simulated vCenter inside the VMA's namespace.
func TestMain(m *testing.M) {
	if dir := os.Getenv(wanEnvVCSim); dir != "" {
		if err := wanVCSim(dir); err != nil {
			fmt.Fprintln(os.Stderr, "vcsim:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// wanVCSim serves a simulated vCenter on wanVCenter whose VM wanVM has one
// disk of $GODWIT_BENCH_DISK bytes of random data, writes its certificate to
// dir/ca.pem and the disk's flat file's path to dir/flat (the sign that it
// is ready), and runs until SIGTERM.
func wanVCSim(dir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	size, err := parseSize(os.Getenv(wanEnvDisk))
	if err != nil {
		return err
	}
	sim, err := vcsim.Start(ctx, vcsim.Config{Addr: wanVCenter, VMs: 1, DiskData: -1, Datastore: filepath.Join(dir, "datastore"),
		Extra: []vcsim.VM{{Name: wanVM, Disks: []int64{size}, CBT: true}}})
	if err != nil {
		return err
	}
	defer sim.Close()
	flats, err := filepath.Glob(filepath.Join(sim.DatastoreDir, wanVM, "*-flat.vmdk"))
	if err != nil || len(flats) != 1 {
		return fmt.Errorf("the flat file of %s in %s: %v %v", wanVM, sim.DatastoreDir, flats, err)
	}
	if err := fillRandom(flats[0], size); err != nil {
		return err
	}
	pem, err := os.ReadFile(sim.CAFile)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pem, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "flat.new"), []byte(flats[0]), 0o644); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, "flat.new"), filepath.Join(dir, "flat")); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// fillRandom writes size random bytes into the file at path.
func fillRandom(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{18})
	buf := make([]byte, 8<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		rng.Read(buf)
		n := min(int64(len(buf)), size-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			f.Close()
			return fmt.Errorf("fill %s: %w", path, err)
		}
	}
	return f.Close()
}

// parseSize reads 512M, 1G, 4G or a number of bytes; "" is 1 GiB.
func parseSize(s string) (int64, error) {
	if s == "" {
		return 1 << 30, nil
	}
	shift := map[byte]int{'K': 10, 'M': 20, 'G': 30}[strings.ToUpper(s[len(s)-1:])[0]]
	num := s
	if shift > 0 {
		num = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n<<shift%(1<<20) != 0 {
		return 0, fmt.Errorf("%s=%q: want a size in MiB or GiB such as 512M or 2G", wanEnvDisk, s)
	}
	return n << shift, nil
}

// BenchmarkWAN runs a real replication job (verification on) of a VM with
// one disk of random data across an emulated WAN link, for each of issue
// 18's links, and in the same run nbdcopy over `ssh -N -L` through the same
// sshd with the same cipher. The OMA's side (oma with its NATS and nbdkit
// exports on tmpfs, OpenSSH's sshd with the production settings as
// scripts/dev-stack.sh writes them) runs in one network namespace, the
// VMA's side (the simulated vCenter and the vma with its tunnel) in
// another, joined only by wanlink (../shared/tools/wanlink) between two tun
// devices. Needs root; `make bench-wan` builds what it runs:
//
//	GODWIT_BENCH_DISK=4G make bench-wan
//	go test -run '^$' -bench 'WAN/100ms' -benchtime 1x -timeout 60m ./e2e
//
// Per link it reports the job's MB/s (the disk's bytes over the time from
// the start request to completed), its fraction of the link rate, the
// MB/s of its copy alone (the rest is the read-back), nbdcopy's MB/s,
// their ratio, the VMA's peak RSS (VmHWM) and the most channels its tunnel
// had open; it logs the VMA health's tunnel block at that moment and
// wanlink's counters, and prints a table with the machine's load. The job
// goes first on the first and third links, nbdcopy on the second.
func BenchmarkWAN(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("BenchmarkWAN makes network namespaces and tun devices: run it as root (make bench-wan)")
	}
	w := newWAN(b)
	before := uptime()
	var rows []string
	for k, l := range wanLinks {
		b.Run(l.name, func(b *testing.B) {
			for i := range b.N {
				r := w.measure(b, l.rate, l.delay, (k+i)%2 == 0)
				b.ReportMetric(r.jobMBs, "job-MB/s")
				b.ReportMetric(100*r.jobMBs*1e6/l.bytesPerSec, "link-%")
				b.ReportMetric(r.copyMBs, "copy-MB/s")
				if r.peerMBs > 0 {
					b.ReportMetric(r.peerMBs, "nbdcopy-MB/s")
					b.ReportMetric(r.jobMBs/r.peerMBs, "ratio")
				}
				b.ReportMetric(float64(r.hwm)/(1<<20), "vma-VmHWM-MiB")
				b.ReportMetric(float64(r.channels), "channels")
				// The tunnel's own measures, where the VMA's health has them.
				var t map[string]any
				_ = json.Unmarshal(r.tunnel, &t)
				for _, f := range []string{"rtt_ms", "min_rtt_ms"} {
					if v, ok := t[f].(float64); ok {
						b.ReportMetric(v, "tunnel-"+strings.ReplaceAll(f, "_", "-"))
					}
				}
				rows = append(rows, fmt.Sprintf("| %s | %.1f MB/s (%.0f %%) | %.1f MB/s | %.1f MB/s (%.0f %%) | %.2f | %d MiB |", l.name,
					r.jobMBs, 100*r.jobMBs*1e6/l.bytesPerSec, r.copyMBs, r.peerMBs, 100*r.peerMBs*1e6/l.bytesPerSec, r.jobMBs/r.peerMBs, r.hwm>>20))
			}
		})
	}
	// Printed, not logged: a passing parent benchmark's log is not shown.
	fmt.Printf("BenchmarkWAN: disk %d MiB, vma flags %q; load before: %s; after: %s\n"+
		"| link | godwit job | its copy | nbdcopy over ssh -N -L | ratio | VMA VmHWM |\n|---|---|---|---|---|---|\n%s\n",
		w.size>>20, w.vmaExtra, before, uptime(), strings.Join(rows, "\n"))
}

// uptime is the uptime command's line: the machine's load.
func uptime() string {
	out, _ := exec.Command("uptime").Output()
	return strings.TrimSpace(string(out))
}

// wan is the bench's two namespaces and what runs in them across links.
type wan struct {
	bin, dir         string
	oma, vma         string // network namespaces
	size             int64
	flat, ca         string // the VM's disk and vCenter's certificate
	token            string
	omaHTTP, vmaHTTP *http.Client
	vmaExtra         []string
	vmID             string
	peerPort         string // nbdcopy's export: the VMA's last NBD port (permitopen); jobs take the lowest
}

// newWAN makes the namespaces and the link's tun devices, starts the
// vCenter, and registers the VMA and starts the OMA and its sshd; all is
// undone by the benchmark's cleanup, and what a killed run left is removed
// first.
func newWAN(b *testing.B) *wan {
	for _, tool := range []string{"nbdkit", "nbdcopy", "nbdinfo", "/usr/sbin/sshd", "ssh", "ssh-keygen", "nsenter", "ip", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s is missing (make deps installs it)", tool)
		}
	}
	size, err := parseSize(os.Getenv(wanEnvDisk))
	if err != nil {
		b.Fatal(err)
	}
	bin := os.Getenv(wanEnvBin)
	if bin == "" {
		bin = filepath.Join("..", "bin")
	}
	if bin, err = filepath.Abs(bin); err != nil {
		b.Fatal(err)
	}
	for _, f := range []string{"oma", "vma", "wanlink"} {
		if _, err := os.Stat(filepath.Join(bin, f)); err != nil {
			b.Fatalf("%v: make bench-wan builds it", err)
		}
	}
	removeStaleNetns(b)
	removeStaleWAN(b)
	// tmpfs: the exports, the source disk and nbdcopy's target never wait on a disk.
	dir, err := os.MkdirTemp("/dev/shm", fmt.Sprintf("godwit-wan-%d-", os.Getpid()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if keep := os.Getenv(wanEnvLogs); keep != "" {
			if err := os.CopyFS(keep, os.DirFS(filepath.Join(dir, "logs"))); err != nil {
				b.Errorf("keep the logs in %s: %v", keep, err)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			b.Errorf("remove %s: %v", dir, err)
		}
	})
	// The tunnel's login user (nobody) reads authorized_keys and makes the API socket here.
	if err := os.Chmod(dir, 0o711); err != nil {
		b.Fatal(err)
	}
	w := &wan{bin: bin, dir: dir, size: size,
		oma: fmt.Sprintf("%swanoma-%d", netnsPrefix, os.Getpid()), vma: fmt.Sprintf("%swanvma-%d", netnsPrefix, os.Getpid())}
	for _, d := range []string{"oma", "vma", "vcsim", "sshd", "logs", "tunnels"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	mustRun(b, "chown", "nobody", filepath.Join(dir, "tunnels"))
	for _, side := range []struct{ ns, dev, addr, sysctl string }{
		// The bulk goes VMA -> OMA: the sender's and the receiver's socket
		// buffer maxima as the plan's sysctls set them (per namespace:
		// the host's stay as they are).
		{w.oma, "wla", wanOMAAddr, "net.ipv4.tcp_rmem=4096 131072 33554432"},
		{w.vma, "wlb", wanVMAAddr, "net.ipv4.tcp_wmem=4096 16384 33554432"},
	} {
		mustRun(b, "ip", "netns", "add", side.ns)
		b.Cleanup(func() { run(b, "ip", "netns", "del", side.ns) })
		mustRun(b, "ip", "-n", side.ns, "link", "set", "lo", "up")
		mustRun(b, "ip", "-n", side.ns, "tuntap", "add", "dev", side.dev, "mode", "tun")
		mustRun(b, "ip", "-n", side.ns, "link", "set", side.dev, "mtu", "9000", "up")
		mustRun(b, "ip", "-n", side.ns, "addr", "add", side.addr+"/24", "dev", side.dev)
		for _, s := range []string{side.sysctl, "net.ipv4.tcp_congestion_control=bbr", "net.ipv4.tcp_slow_start_after_idle=0",
			"net.ipv4.tcp_no_metrics_save=1"} {
			mustRun(b, "ip", "netns", "exec", side.ns, "sysctl", "-q", "-w", s)
		}
	}
	w.omaHTTP, w.vmaHTTP = netnsClient(w.oma), netnsClient(w.vma)
	if v := os.Getenv(wanEnvNBDConnections); v != "" {
		w.vmaExtra = append(w.vmaExtra, "-nbd-connections", v)
	}
	w.vmaExtra = append(w.vmaExtra, strings.Fields(os.Getenv(wanEnvVMAFlags))...)

	// The VMA side's vCenter: this test binary (TestMain).
	sim := w.start(b, w.vma, "vcsim", []string{wanEnvVCSim + "=" + filepath.Join(dir, "vcsim"), wanEnvDisk + "=" + strconv.FormatInt(size, 10),
		"GODWIT_VCSIM_PASSWORD=" + vcsim.DefaultPassword}, os.Args[0], "-test.run=^$")
	w.waitFor(b, "the simulated vCenter with its disk", func() error {
		flat, err := os.ReadFile(filepath.Join(dir, "vcsim", "flat"))
		w.flat = string(flat)
		return err
	}, sim)
	w.ca = filepath.Join(dir, "vcsim", "ca.pem")

	// Registration, token and sshd as scripts/dev-stack.sh does them.
	forwards := []string{"-nats-addr", wanNATS, "-nbd-ports", wanNBDPorts, "-export-host", "127.0.0.1",
		"-tunnel-dir", filepath.Join(dir, "tunnels"), "-sshd-port", wanSSHPort}
	key := w.output(b, "", filepath.Join(bin, "vma"), "pubkey", "-ssh", "-data", filepath.Join(dir, "vma"))
	w.output(b, w.oma, append([]string{filepath.Join(bin, "oma"), "vma", "add", "-id", "vma-1", "-data", filepath.Join(dir, "oma"),
		"-seed-out", filepath.Join(dir, "vma", "nats.seed"), "-ssh-key", strings.TrimSpace(key), "-api-port", wanVMAAPIPort,
		"-api-addr", wanOMAAPI}, forwards...)...)
	w.token = strings.TrimSpace(w.output(b, w.oma, filepath.Join(bin, "oma"), "token", "create", "-name", "bench-wan", "-scope", "admin",
		"-data", filepath.Join(dir, "oma")))
	hostKey := filepath.Join(dir, "sshd", "host_ed25519")
	w.output(b, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "godwit-bench-wan", "-f", hostKey)
	authKeys := w.output(b, w.oma, append([]string{filepath.Join(bin, "oma"), "vma", "authorized-keys", "-data", filepath.Join(dir, "oma")}, forwards...)...)
	writeFile(b, filepath.Join(dir, "authorized_keys"), authKeys, 0o644)
	permits := regexp.MustCompile(`permitopen="127\.0\.0\.1:(\d+)"`).FindAllStringSubmatch(authKeys, -1)
	if len(permits) < 3 {
		b.Fatalf("authorized_keys permits too few ports for a job and nbdcopy:\n%s", authKeys)
	}
	w.peerPort = permits[len(permits)-1][1]
	pub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		b.Fatal(err)
	}
	writeFile(b, filepath.Join(dir, "vma", "known_hosts"),
		fmt.Sprintf("[%s]:%s %s\n", wanOMAAddr, wanSSHPort, strings.Join(strings.Fields(string(pub))[:2], " ")), 0o644)
	writeFile(b, filepath.Join(dir, "sshd", "sshd_config"), sshdConfig(b, dir, hostKey), 0o600)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		b.Fatal(err)
	}

	oma := w.start(b, w.oma, "oma", nil, append([]string{filepath.Join(bin, "oma"), "-data", filepath.Join(dir, "oma"), "-api-addr", wanOMAAPI},
		forwards...)...)
	sshd := w.start(b, w.oma, "sshd", nil, "/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd", "sshd_config"))
	w.waitFor(b, "the OMA's API", func() error { return w.call(w.omaHTTP, "GET", "http://"+wanOMAAPI+"/api/v1/health", nil, nil) }, oma)
	w.waitFor(b, "sshd", func() error { return dialIn(w.oma, wanOMAAddr+":"+wanSSHPort) }, sshd)
	return w
}

// sshdConfig is the sshd_config scripts/dev-stack.sh writes: its own lines,
// then the settings of scripts/sshd-godwit.conf's Match block for every user.
func sshdConfig(b *testing.B, dir, hostKey string) string {
	snippet, err := os.ReadFile(filepath.Join("..", "scripts", "sshd-godwit.conf"))
	if err != nil {
		b.Fatal(err)
	}
	lines := []string{"# generated by BenchmarkWAN as scripts/dev-stack.sh does, from scripts/sshd-godwit.conf",
		"ListenAddress " + wanOMAAddr + ":" + wanSSHPort, "HostKey " + hostKey, "PidFile " + filepath.Join(dir, "sshd", "sshd.pid"),
		"StrictModes no", "PubkeyAuthentication yes", "PermitRootLogin no", "AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys")}
	match := false
	for _, line := range strings.Split(string(snippet), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "Match":
			match = true
		case match && len(f) > 0 && !strings.HasPrefix(f[0], "#") && f[0] != "AuthorizedKeysFile":
			lines = append(lines, strings.Join(f, " "))
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// removeStaleWAN ends the wanlink processes and removes the directories of
// earlier runs that were killed before their cleanup (their namespaces and
// what ran in them go with removeStaleNetns; wanlink runs outside them).
func removeStaleWAN(b *testing.B) {
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		data, err := os.ReadFile(f)
		args := strings.Split(string(data), "\x00")
		if err != nil || len(args) < 3 || filepath.Base(args[0]) != "wanlink" || args[1] != "-tun" {
			continue
		}
		_, rest, _ := strings.Cut(args[2], netnsPrefix+"wanoma-")
		owner, _, _ := strings.Cut(rest, ":")
		if n, err := strconv.Atoi(owner); err != nil || syscall.Kill(n, 0) == nil {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
			b.Logf("ending the stale wanlink %d of run %s", pid, owner)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	dirs, _ := filepath.Glob("/dev/shm/godwit-wan-*")
	for _, dir := range dirs {
		pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), "godwit-wan-"), "-")
		if n, err := strconv.Atoi(pid); err != nil || syscall.Kill(n, 0) == nil {
			continue
		}
		b.Logf("removing the stale bench directory %s", dir)
		if err := os.RemoveAll(dir); err != nil {
			b.Errorf("remove %s: %v", dir, err)
		}
	}
}

func writeFile(b *testing.B, path, data string, mode os.FileMode) {
	b.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		b.Fatal(err)
	}
}

// wanResult is one link's figures.
type wanResult struct {
	jobMBs, copyMBs, peerMBs float64
	hwm                      int64           // the VMA's VmHWM, bytes
	channels                 int             // most tunnel channels seen open during the job
	tunnel                   json.RawMessage // the VMA health's tunnel block then
}

// measure runs the link, the VMA over it, then the job and nbdcopy, the
// job first if jobFirst.
func (w *wan) measure(b *testing.B, rate string, delay time.Duration, jobFirst bool) wanResult {
	b.StopTimer()
	link := w.start(b, "", "wanlink", nil, "nice", "-n", "-10", filepath.Join(w.bin, "wanlink"),
		"-tun", w.oma+":wla,"+w.vma+":wlb", "-rate", rate, "-delay", delay.String())
	defer func() {
		link.stop()
		out, _ := os.ReadFile(link.log)
		b.Logf("wanlink %s %v: %s", rate, delay, strings.TrimSpace(string(out)))
	}()
	w.waitFor(b, "a TCP connection across the link", func() error { return dialIn(w.vma, wanOMAAddr+":"+wanSSHPort) }, link)

	vma := w.startVMA(b)
	defer vma.stop()
	var r wanResult
	b.StartTimer()
	switch {
	case os.Getenv(wanEnvPeer) == "off":
		r.jobMBs, r.copyMBs, r.channels, r.tunnel = w.job(b)
	case jobFirst:
		r.jobMBs, r.copyMBs, r.channels, r.tunnel = w.job(b)
		r.peerMBs = w.nbdcopy(b)
	default:
		r.peerMBs = w.nbdcopy(b)
		r.jobMBs, r.copyMBs, r.channels, r.tunnel = w.job(b)
	}
	b.StopTimer()
	r.hwm = vmHWM(b, vma.cmd.Process.Pid)
	b.Logf("%s %v: job %.1f MB/s (its copy %.1f MB/s), nbdcopy %.1f MB/s over ssh -L, ratio %.2f, VMA VmHWM %d MiB, load %s",
		rate, 2*delay, r.jobMBs, r.copyMBs, r.peerMBs, r.jobMBs/r.peerMBs, r.hwm>>20, uptime())
	return r
}

// startVMA starts a VMA (one per link: its tunnel's TCP starts afresh) and
// waits until its tunnel and bus are up and the OMA has its heartbeat.
func (w *wan) startVMA(b testing.TB) *proc {
	argv := []string{filepath.Join(w.bin, "vma"), "-data", filepath.Join(w.dir, "vma"), "-id", "vma-1", "-api-addr", wanVMAAPI,
		"-tunnel", "ssh://nobody@" + wanOMAAddr + ":" + wanSSHPort, "-tunnel-known-hosts", filepath.Join(w.dir, "vma", "known_hosts"),
		"-tunnel-listen", filepath.Join(w.dir, "tunnels", "vma-1.sock"), "-nats-url", "nats://" + wanNATS,
		"-nats-seed", filepath.Join(w.dir, "vma", "nats.seed"), "-vcenter-ca", w.ca}
	vma := w.start(b, w.vma, "vma", nil, append(argv, w.vmaExtra...)...)
	w.waitFor(b, "the VMA's tunnel and bus", func() error {
		var h struct {
			Bus    struct{ Connected bool }
			Tunnel struct{ Connected bool }
		}
		if err := w.call(w.vmaHTTP, "GET", "http://"+wanVMAAPI+"/api/v1/health", nil, &h); err != nil {
			return err
		}
		if !h.Bus.Connected || !h.Tunnel.Connected {
			return fmt.Errorf("bus connected %v, tunnel connected %v", h.Bus.Connected, h.Tunnel.Connected)
		}
		return nil
	}, vma)
	w.waitFor(b, "the VMA's heartbeat on the OMA", func() error {
		var h map[string]any
		if err := w.call(w.omaHTTP, "GET", "http://"+wanOMAAPI+"/api/v1/health", nil, &h); err != nil {
			return err
		}
		if raw, _ := json.Marshal(h["connected_vmas"]); !bytes.Contains(raw, []byte(`"vma-1"`)) {
			return fmt.Errorf("connected_vmas %s", raw)
		}
		return nil
	}, vma)
	return vma
}

// job runs one initial replication through the OMA's API, verification on,
// and returns its MB/s, that of its copy alone (start to the end of the
// copying state, polled every 0.5 s) and the most tunnel channels the VMA's
// health showed while it copied.
func (w *wan) job(b *testing.B) (mbs, copyMBs float64, channels int, tunnel json.RawMessage) {
	omaURL := "http://" + wanOMAAPI + "/api/v1"
	if w.vmID == "" {
		var disc struct {
			VMs []struct{ ID, Name string }
		}
		if err := w.call(w.omaHTTP, "POST", omaURL+"/discover", map[string]any{"vcenter": wanVCenter, "username": vcsim.DefaultUsername,
			"password": vcsim.DefaultPassword, "datacenter": vcsim.Datacenter, "filter": wanVM}, &disc); err != nil {
			b.Fatal(err)
		}
		for _, vm := range disc.VMs {
			if vm.Name == wanVM {
				w.vmID = vm.ID
			}
		}
		if w.vmID == "" {
			b.Fatalf("discovery found no %s: %+v", wanVM, disc)
		}
		// The answer comes from the VMA; the inventory takes it from the bus.
		w.waitFor(b, "the VM in the OMA's inventory", func() error {
			var inv struct {
				VMs []struct{ ID string }
			}
			if err := w.call(w.omaHTTP, "GET", omaURL+"/vms", nil, &inv); err != nil {
				return err
			}
			for _, vm := range inv.VMs {
				if vm.ID == w.vmID {
					return nil
				}
			}
			return fmt.Errorf("no %s among %d VMs", w.vmID, len(inv.VMs))
		})
	}
	var job struct {
		JobID string `json:"job_id"`
	}
	if err := w.call(w.omaHTTP, "POST", omaURL+"/replications", map[string]any{"source_vm": map[string]any{"id": w.vmID},
		"replication_type": "initial"}, &job); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := w.call(w.omaHTTP, "POST", omaURL+"/replications/"+job.JobID+"/start", map[string]any{"username": vcsim.DefaultUsername,
		"password": vcsim.DefaultPassword, "verify": true}, nil); err != nil {
		b.Fatal(err)
	}
	type view struct {
		State           string     `json:"state"`
		BytesDone       int64      `json:"bytes_done"`
		VerifyBytesDone int64      `json:"verify_bytes_done"`
		LastError       string     `json:"last_error"`
		FinishedAt      *time.Time `json:"finished_at"`
		Disks           []struct {
			VolumePath string `json:"volume_path"`
		} `json:"disks"`
	}
	var v view
	progress, progressAt := int64(-1), time.Now()
	var copyEnd time.Time // the first poll past copying: the read-back (verifying) or later
	for {
		if err := w.call(w.omaHTTP, "GET", omaURL+"/replications/"+job.JobID, nil, &v); err != nil {
			b.Fatal(err)
		}
		if copyEnd.IsZero() && (v.State == "verifying" || v.State == "finalizing" || v.State == "completed") {
			copyEnd = time.Now()
		}
		if v.State == "completed" || v.State == "failed" || v.State == "cancelled" {
			break
		}
		var h struct{ Tunnel json.RawMessage }
		if err := w.call(w.vmaHTTP, "GET", "http://"+wanVMAAPI+"/api/v1/health", nil, &h); err == nil {
			var t struct{ Channels int }
			if json.Unmarshal(h.Tunnel, &t) == nil && t.Channels >= channels && v.State == "copying" {
				channels, tunnel = t.Channels, h.Tunnel
			}
		}
		// Bounded by progress, not by a guess at the link's speed.
		if p := v.BytesDone + v.VerifyBytesDone; p != progress {
			progress, progressAt = p, time.Now()
		} else if time.Since(progressAt) > 3*time.Minute {
			b.Fatalf("job %s: no progress for 3 min, %s at %d+%d bytes", job.JobID, v.State, v.BytesDone, v.VerifyBytesDone)
		}
		time.Sleep(500 * time.Millisecond)
	}
	elapsed := time.Since(start)
	if v.FinishedAt != nil { // the OMA's own time, not that of the poll that saw it
		elapsed = v.FinishedAt.Sub(start)
	}
	if v.State != "completed" {
		b.Fatalf("job %s %s: %s", job.JobID, v.State, v.LastError)
	}
	b.Logf("job %s: %d bytes in %.1f s, copied in the first %.1f s; the VMA's tunnel at its most channels while copying: %s",
		job.JobID, v.BytesDone, elapsed.Seconds(), copyEnd.Sub(start).Seconds(), tunnel)
	for _, d := range v.Disks { // the next link's job writes a new generation: keep tmpfs small
		if err := os.Remove(d.VolumePath); err != nil {
			b.Logf("remove the replica %s: %v", d.VolumePath, err)
		}
	}
	return float64(w.size) / 1e6 / elapsed.Seconds(), float64(w.size) / 1e6 / copyEnd.Sub(start).Seconds(), channels, tunnel
}

// nbdcopy copies the VM's disk with nbdcopy (its default 4 connections)
// into an nbdkit file export in the OMA's namespace, over `ssh -N -L`
// through the same sshd with the VMA's key and the cipher the tunnel
// negotiates, and returns its MB/s.
func (w *wan) nbdcopy(b *testing.B) float64 {
	peer := filepath.Join(w.dir, "peer.raw")
	if err := os.WriteFile(peer, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	defer os.Remove(peer)
	if err := os.Truncate(peer, w.size); err != nil {
		b.Fatal(err)
	}
	nbdkit := w.start(b, w.oma, "nbdkit", nil, "nbdkit", "-f", "-i", "127.0.0.1", "-p", w.peerPort, "file", peer)
	defer nbdkit.stop()
	w.waitFor(b, "nbdkit", func() error { return dialIn(w.oma, "127.0.0.1:"+w.peerPort) }, nbdkit)
	ssh := w.start(b, w.vma, "ssh", nil, "ssh", "-N", "-T", "-F", "/dev/null", "-c", "aes128-gcm@openssh.com",
		"-i", filepath.Join(w.dir, "vma", tunnel.KeyFile), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile="+filepath.Join(w.dir, "vma", "known_hosts"), "-o", "StrictHostKeyChecking=yes",
		"-o", "ExitOnForwardFailure=yes", "-p", wanSSHPort, "-L", wanForward+":127.0.0.1:"+w.peerPort, "nobody@"+wanOMAAddr)
	defer ssh.stop()
	w.waitFor(b, "nbdinfo through ssh -L", func() error {
		if out, err := w.run(w.vma, "nbdinfo", "--size", "nbd://"+wanForward); err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}, ssh, nbdkit)
	start := time.Now()
	if out, err := w.run(w.vma, "nbdcopy", w.flat, "nbd://"+wanForward); err != nil {
		b.Fatalf("nbdcopy: %v\n%s", err, out)
	}
	elapsed := time.Since(start)
	b.Logf("nbdcopy: %d bytes in %.1f s", w.size, elapsed.Seconds())
	return float64(w.size) / 1e6 / elapsed.Seconds()
}

// vmHWM reads the peak resident set size of process pid.
func vmHWM(b *testing.B, pid int) int64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// proc is a process the bench started, its output in a log file.
type proc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
}

// stop sends the process's group SIGTERM and waits for it, SIGKILL after
// 15 s. Stopping it again does nothing: once it is reaped its pid, which
// is also its group's id, may be another process's (pids wrap at 32768 here).
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(15 * time.Second):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// enterNetns is the command that runs argv in network namespace ns ("": here).
func enterNetns(ns string, argv ...string) []string {
	if ns == "" {
		return argv
	}
	return append([]string{"nsenter", "--net=/run/netns/" + ns, "--"}, argv...)
}

// start runs argv in namespace ns in its own process group, its output in
// logs/<name>.log; the benchmark's cleanup stops it.
func (w *wan) start(b testing.TB, ns, name string, env []string, argv ...string) *proc {
	b.Helper()
	a := enterNetns(ns, argv...)
	cmd := exec.Command(a[0], a[1:]...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{name: name, log: filepath.Join(w.dir, "logs", fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano())), cmd: cmd, done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	// No Pdeathsig: it follows the thread that forked, and dialNetns ends threads.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	b.Cleanup(p.stop)
	return p
}

// run runs argv in namespace ns and returns its output.
func (w *wan) run(ns string, argv ...string) (string, error) {
	a := enterNetns(ns, argv...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, a[0], a[1:]...).CombinedOutput()
	return string(out), err
}

// output runs argv in namespace ns and returns its standard output; a
// failure ends the benchmark.
func (w *wan) output(b testing.TB, ns string, argv ...string) string {
	b.Helper()
	a := enterNetns(ns, argv...)
	var stderr bytes.Buffer
	cmd := exec.Command(a[0], a[1:]...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(argv[:min(len(argv), 3)], " "), err, stderr.Bytes())
	}
	return string(out)
}

// waitFor polls check until it succeeds. It fails the benchmark when one
// of procs exits first (with the end of its log), or after 3 minutes.
func (w *wan) waitFor(b testing.TB, what string, check func() error, procs ...*proc) {
	b.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		err := check()
		if err == nil {
			return
		}
		for _, p := range procs {
			if p.exited() {
				out, _ := os.ReadFile(p.log)
				b.Fatalf("waiting for %s: %s exited: %v\n%s", what, p.name, p.cmd.ProcessState, tail(out, 30))
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: not there after 3 min: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tail is the last n lines of out.
func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// call sends a JSON request (the OMA's token on every call) and decodes
// the answer into out; a status of 300 or more is an error with the body.
func (w *wan) call(c *http.Client, method, url string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c == w.omaHTTP {
		req.Header.Set("Authorization", "Bearer "+w.token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, data)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// netnsClient is an HTTP client whose connections are made in network
// namespace ns: each dial runs on a thread that enters ns and ends with it.
func netnsClient(ns string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialNetns(ctx, ns, network, addr)
	}
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: dial}}
}

// dialIn checks that a TCP connection to addr can be made in namespace ns.
func dialIn(ns, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialNetns(ctx, ns, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// dialNetns dials addr from network namespace ns. The socket keeps the
// namespace it was made in; the thread that entered ns is never given
// back (a goroutine that ends locked ends its thread).
func dialNetns(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("enter %s: %w", ns, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	if r.err != nil && errors.Is(r.err, os.ErrNotExist) {
		return nil, fmt.Errorf("network namespace %s: %w", ns, r.err)
	}
	return r.c, r.err
}
