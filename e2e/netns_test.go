package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netnsPrefix starts the name of every network namespace the tests make;
// the rest is the pid of the test binary, so that a run killed before its
// cleanup leaves namespaces the next run can tell are stale.
const netnsPrefix = "godwit-e2e-"

// blockTimeout bounds one README block: each waits for what it started at
// most 60 s, so this is reached only by a block stuck on something the
// README does not wait for. It keeps a stuck run from reaching go test's
// -timeout, which would end the test without its cleanup.
const blockTimeout = 5 * time.Minute

// lab is the directory and the namespaces of one test's machines.
type lab struct {
	t        *testing.T
	dir      string
	machines []*machine
}

// newLab makes the lab's directory (outside every directory a machine
// overlays) and removes the namespaces of earlier runs that were killed.
func newLab(t *testing.T) *lab {
	t.Helper()
	removeStaleNetns(t)
	dir, err := os.MkdirTemp("", fmt.Sprintf("godwit-two-machines-%d-", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	for _, over := range overlaid {
		if dir == over || strings.HasPrefix(dir, over+"/") {
			t.Fatalf("the temporary directory %s is under %s, which the machines overlay: set TMPDIR elsewhere", dir, over)
		}
	}
	// The machines' mount namespaces are kept as bind mounts on files
	// here, which needs a private mount.
	ns := filepath.Join(dir, "ns")
	if err := os.Mkdir(ns, 0o700); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "mount", "--bind", ns, ns)
	t.Cleanup(func() { run(t, "umount", "-l", ns) })
	mustRun(t, "mount", "--make-private", ns)
	return &lab{t: t, dir: dir}
}

// removeStaleNetns deletes the network namespaces named by netnsPrefix
// whose test binary is gone (killed before its cleanup), with the
// processes left in them, and those runs' directories.
func removeStaleNetns(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], netnsPrefix) {
			continue
		}
		_, pid, _ := strings.Cut(strings.TrimPrefix(f[0], netnsPrefix), "-")
		if n, err := strconv.Atoi(pid); err == nil && syscall.Kill(n, 0) == nil {
			continue // another run's, live
		}
		t.Logf("removing the stale network namespace %s and its processes", f[0])
		if out, err := exec.Command("ip", "netns", "pids", f[0]).Output(); err == nil {
			for _, p := range strings.Fields(string(out)) {
				if n, err := strconv.Atoi(p); err == nil {
					_ = syscall.Kill(n, syscall.SIGKILL)
				}
			}
		}
		run(t, "ip", "netns", "del", f[0])
	}
	// Their labs: the mount namespaces kept on files, then the overlays.
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "godwit-two-machines-*"))
	for _, dir := range dirs {
		pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), "godwit-two-machines-"), "-")
		if n, err := strconv.Atoi(pid); err != nil || syscall.Kill(n, 0) == nil {
			continue
		}
		t.Logf("removing the stale lab %s", dir)
		files, _ := filepath.Glob(filepath.Join(dir, "ns", "*"))
		for _, f := range append(files, filepath.Join(dir, "ns")) {
			_ = exec.Command("umount", "-l", f).Run()
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove the stale lab %s: %v", dir, err)
		}
	}
}

// overlaid are the directories each machine has of its own: an overlay
// over this machine's, its changes in the lab. /run is a fresh tmpfs.
var overlaid = []string{"/etc", "/root", "/usr/local", "/var"}

// machine is one network namespace with a mount namespace of its own.
type machine struct {
	lab      *lab
	name     string
	netns    string // under /run/netns
	mntns    string // the file holding its mount namespace
	fifo     string // the directory of the systemctl stand-in's requests
	services map[string]*service
	groups   []int // process groups of the blocks, for what they left running
}

// machine makes a machine named name whose /etc/hosts ends with hosts.
func (l *lab) machine(name, hosts string) *machine {
	t := l.t
	t.Helper()
	m := &machine{lab: l, name: name, netns: fmt.Sprintf("%s%s-%d", netnsPrefix, name, os.Getpid()),
		mntns: filepath.Join(l.dir, "ns", name), fifo: filepath.Join(l.dir, "systemctl-"+name), services: map[string]*service{}}
	l.machines = append(l.machines, m)
	mustRun(t, "ip", "netns", "add", m.netns)
	t.Cleanup(func() { run(t, "ip", "netns", "del", m.netns) })
	mustRun(t, "ip", "-n", m.netns, "link", "set", "lo", "up")

	if err := os.WriteFile(m.mntns, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "unshare", "--mount="+m.mntns, "--propagation", "private", "true")
	t.Cleanup(func() { run(t, "umount", "-l", m.mntns) })
	var mounts []string
	for _, dir := range overlaid {
		base := filepath.Join(l.dir, name, strings.ReplaceAll(strings.TrimPrefix(dir, "/"), "/", "-"))
		for _, d := range []string{base + ".up", base + ".work"} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		mounts = append(mounts, fmt.Sprintf("mount -t overlay overlay -o lowerdir=%s,upperdir=%s.up,workdir=%s.work %s", dir, base, base, dir))
	}
	// A minimal Debian has no sudo: where this machine has one, the
	// machines have none that works.
	mounts = append(mounts, "if [ -e /usr/bin/sudo ]; then mount --bind /dev/null /usr/bin/sudo; fi")
	mounts = append(mounts, "mount -t tmpfs -o mode=0755 tmpfs /run", "printf '%s' \""+hosts+"\" >> /etc/hosts",
		"echo "+name+".example.com > /etc/hostname")
	if out, err := m.output(nil, "sh", "-ec", strings.Join(mounts, "\n")); err != nil {
		t.Fatalf("machine %s: %v\n%s", name, err, out)
	}

	// systemctl in PATH is a stand-in that asks the test, through two FIFOs.
	if err := os.MkdirAll(m.fifo, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"req", "resp"} {
		if err := syscall.Mkfifo(filepath.Join(m.fifo, f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(l.dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	standIn := `#!/bin/sh
# systemctl for the two-machine test: the test runs the unit by hand.
printf '%s\n' "$*" > "$GODWIT_TEST_SYSTEMCTL/req"
# The FIFO may still hold the writer of the answer before ours: its close
# reads as an empty line; wait for ours.
answer=
while [ -z "$answer" ]; do read -r answer < "$GODWIT_TEST_SYSTEMCTL/resp" || answer=; done
[ "$answer" = ok ] && exit 0
echo "systemctl $*: $answer" >&2
exit 1
`
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(standIn), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.stop)
	return m
}

// link joins two machines with a veth pair.
func (l *lab) link(a *machine, aAddr string, b *machine, bAddr string) {
	t := l.t
	t.Helper()
	mustRun(t, "ip", "-n", a.netns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b.netns)
	for _, side := range []struct {
		m    *machine
		addr string
	}{{a, aAddr}, {b, bAddr}} {
		mustRun(t, "ip", "-n", side.m.netns, "addr", "add", side.addr, "dev", "eth0")
		mustRun(t, "ip", "-n", side.m.netns, "link", "set", "eth0", "up")
	}
}

// logServices logs the output of every service the machines ran.
func (l *lab) logServices() {
	for _, m := range l.machines {
		for name, s := range m.services {
			out, _ := os.ReadFile(s.log)
			l.t.Logf("%s on %s logged:\n%s", name, m.name, out)
		}
	}
}

// enter is the command that runs argv inside the machine, as root.
func (m *machine) enter(argv ...string) []string {
	return append([]string{"nsenter", "--mount=" + m.mntns, "--net=/run/netns/" + m.netns, "--"}, argv...)
}

// output runs argv inside the machine with stdin and returns its output.
func (m *machine) output(stdin []byte, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), blockTimeout)
	defer cancel()
	a := m.enter(argv...)
	cmd := exec.CommandContext(ctx, a[0], a[1:]...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, stderr.Bytes())
	}
	return out, nil
}

// script runs a README block with bash as root in /root, serving its
// systemctl commands, and returns what it printed. What it leaves running
// in the background is ended with the machine.
func (m *machine) script(name, text string) (string, error) {
	logFile := filepath.Join(m.lab.dir, "logs", m.name+"-"+name+".out")
	if err := os.MkdirAll(filepath.Dir(logFile), 0o755); err != nil {
		return "", err
	}
	f, err := os.Create(logFile)
	if err != nil {
		return "", err
	}
	defer f.Close()
	a := m.enter("bash", "-eo", "pipefail", "-c", "cd /root\n"+text)
	cmd := exec.Command(a[0], a[1:]...)
	cmd.Env = []string{"PATH=" + filepath.Join(m.lab.dir, "bin") + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "USER=root", "LOGNAME=root", "LANG=C.UTF-8", "GODWIT_TEST_SYSTEMCTL=" + m.fifo}
	// A file, not a pipe: what the block leaves in the background keeps it.
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	m.groups = append(m.groups, cmd.Process.Pid)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	requests, stopServing := m.serveSystemctl()
	defer stopServing()
	timer := time.NewTimer(blockTimeout)
	defer timer.Stop()
	for {
		select {
		case req := <-requests:
			err := m.systemctl(req)
			answer := "ok"
			if err != nil {
				answer = strings.ReplaceAll(err.Error(), "\n", " ")
			}
			if werr := os.WriteFile(filepath.Join(m.fifo, "resp"), []byte(answer+"\n"), 0); werr != nil {
				return "", werr
			}
			continue
		case err = <-done:
		case <-timer.C:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err = fmt.Errorf("still running after %v", blockTimeout)
			<-done
		}
		break
	}
	out, _ := os.ReadFile(logFile)
	return string(out), err
}

// serveSystemctl reads the stand-in's requests, one a line, until the
// returned stop is called.
func (m *machine) serveSystemctl() (requests <-chan string, stop func()) {
	reqs, quit := make(chan string), make(chan struct{})
	go func() {
		for {
			select {
			case <-quit:
				return
			default:
			}
			data, err := os.ReadFile(filepath.Join(m.fifo, "req"))
			req := strings.TrimSpace(string(data))
			if err != nil || req == "\x00stop" {
				return
			}
			select {
			case reqs <- req:
			case <-quit:
				return
			}
		}
	}()
	return reqs, func() {
		close(quit)
		// Wake the reader if it waits to open the FIFO; without a reader
		// this fails at once (ENXIO) and the reader sees quit.
		if f, err := os.OpenFile(filepath.Join(m.fifo, "req"), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_, _ = f.WriteString("\x00stop\n")
			f.Close()
		}
	}
}

// systemctl does what systemctl would for the README's commands.
func (m *machine) systemctl(req string) error {
	words := strings.Fields(req)
	if len(words) == 0 {
		return errors.New("no command")
	}
	var units []string
	now := false
	for _, w := range words[1:] {
		if w == "--now" {
			now = true
		} else if !strings.HasPrefix(w, "-") {
			units = append(units, strings.TrimSuffix(w, ".service"))
		}
	}
	for _, u := range units {
		var err error
		switch words[0] {
		case "enable":
			if now {
				err = m.start(u)
			}
		case "start":
			err = m.start(u)
		case "restart":
			if err = m.stopUnit(u); err == nil {
				err = m.start(u)
			}
		case "stop":
			err = m.stopUnit(u)
		case "reload":
			err = m.reload(u)
		default:
			err = fmt.Errorf("the two-machine test does not do %q", words[0])
		}
		if err != nil {
			return err
		}
	}
	if words[0] != "daemon-reload" && len(units) == 0 {
		return fmt.Errorf("%q names no unit", req)
	}
	return nil
}

// service is a unit the test runs by hand.
type service struct {
	unit *unit
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func (s *service) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// unit is the [Service] section of a unit file: each key's values.
type unit map[string][]string

func (u unit) get(key string) string {
	if v := u[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// readUnit reads a unit file the way systemd finds it on the machine.
func (m *machine) readUnit(name string) (unit, error) {
	var data []byte
	var err error
	for _, dir := range []string{"/etc/systemd/system", "/lib/systemd/system"} {
		if data, err = m.output(nil, "cat", dir+"/"+name+".service"); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("Unit %s.service not found: %w", name, err)
	}
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			if k, v, ok := strings.Cut(line, "="); ok {
				u[strings.TrimSpace(k)] = append(u[strings.TrimSpace(k)], strings.TrimSpace(v))
			}
		}
	}
	return u, nil
}

// environment is the unit's environment: Environment, then each
// EnvironmentFile (a "-" before the path: it may be missing).
func (m *machine) environment(u unit) (map[string]string, error) {
	env := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", "LANG": "C.UTF-8"}
	for _, v := range u["Environment"] {
		for _, kv := range strings.Fields(v) {
			if k, val, ok := strings.Cut(strings.Trim(kv, `"`), "="); ok {
				env[k] = val
			}
		}
	}
	for _, f := range u["EnvironmentFile"] {
		optional := strings.HasPrefix(f, "-")
		data, err := m.output(nil, "cat", strings.TrimPrefix(f, "-"))
		if err != nil {
			if optional {
				continue
			}
			return nil, err
		}
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
				env[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
			}
		}
	}
	return env, nil
}

// expand substitutes $VAR (split into words) and ${VAR} (one word) in an
// Exec line, as systemd does, and drops the line's prefixes ("-", "@"...).
func expand(line string, env map[string]string) []string {
	line = strings.TrimLeft(line, "-@:+!")
	var argv []string
	for _, w := range strings.Fields(line) {
		switch {
		case strings.HasPrefix(w, "${") && strings.HasSuffix(w, "}"):
			argv = append(argv, env[w[2:len(w)-1]])
		case strings.HasPrefix(w, "$"):
			argv = append(argv, strings.Fields(env[w[1:]])...)
		default:
			argv = append(argv, w)
		}
	}
	return argv
}

// start runs a unit by hand: its directories, its ExecStartPre, then its
// ExecStart as its User with its environment and UMask, in the background.
func (m *machine) start(name string) error {
	if s := m.services[name]; s != nil && s.running() {
		return nil
	}
	u, err := m.readUnit(name)
	if err != nil {
		return err
	}
	env, err := m.environment(u)
	if err != nil {
		return err
	}
	user, group := u.get("User"), u.get("Group")
	if group == "" {
		group = user
	}
	owner := "root:root"
	if user != "" {
		owner = user + ":" + group
		home, err := m.output(nil, "sh", "-c", `getent passwd "$1" | cut -d: -f6`, "sh", user)
		if err != nil || len(bytes.TrimSpace(home)) == 0 {
			return fmt.Errorf("user %s: %v", user, err)
		}
		env["HOME"], env["USER"], env["LOGNAME"] = string(bytes.TrimSpace(home)), user, user
	}
	for _, d := range []struct{ key, root, mode string }{
		{"StateDirectory", "/var/lib/", "StateDirectoryMode"}, {"RuntimeDirectory", "/run/", "RuntimeDirectoryMode"},
	} {
		for _, dir := range strings.Fields(u.get(d.key)) {
			mode := u.get(d.mode)
			if mode == "" {
				mode = "0755"
			}
			if _, err := m.output(nil, "install", "-d", "-o", strings.Split(owner, ":")[0], "-g", strings.Split(owner, ":")[1], "-m", mode, d.root+dir); err != nil {
				return err
			}
		}
	}
	for _, pre := range u["ExecStartPre"] {
		if out, err := m.output(nil, expand(pre, env)...); err != nil {
			return fmt.Errorf("ExecStartPre: %v %s", err, out)
		}
	}
	umask := u.get("UMask")
	if umask == "" {
		umask = "0022"
	}
	argv := []string{"sh", "-c", `umask "$0" && cd / && exec "$@"`, umask}
	argv = append(argv, expand(u.get("ExecStart"), env)...)
	if user != "" {
		argv = append([]string{"setpriv", "--reuid=" + user, "--regid=" + group, "--init-groups", "--"}, argv...)
	}
	// ProtectHome, PrivateTmp and ProtectSystem=strict, which catch files
	// put in the wrong place: the unit gets a mount namespace of its own,
	// /root and /home empty and closed, /tmp and /var/tmp its own, and
	// every mount read-only but /dev, /proc, /sys, those and its own
	// directories (StateDirectory, RuntimeDirectory, ReadWritePaths).
	var hide []string
	if v := u.get("ProtectHome"); v == "yes" || v == "true" {
		hide = append(hide, "mount -t tmpfs -o mode=0000 tmpfs /root", "mount -t tmpfs -o mode=0000 tmpfs /home")
	}
	if v := u.get("PrivateTmp"); v == "yes" || v == "true" {
		hide = append(hide, "mount -t tmpfs -o mode=1777 tmpfs /tmp", "mount -t tmpfs -o mode=1777 tmpfs /var/tmp")
	}
	if u.get("ProtectSystem") == "strict" {
		writable := []string{"/tmp", "/var/tmp"}
		for _, d := range strings.Fields(u.get("StateDirectory")) {
			writable = append(writable, "/var/lib/"+d)
		}
		for _, d := range strings.Fields(u.get("RuntimeDirectory")) {
			writable = append(writable, "/run/"+d)
		}
		for _, v := range u["ReadWritePaths"] {
			writable = append(writable, strings.Fields(strings.ReplaceAll(v, "-/", "/"))...)
		}
		for _, d := range writable[2:] {
			hide = append(hide, fmt.Sprintf(`if [ -d %[1]s ]; then mount --bind %[1]s %[1]s; fi`, d))
		}
		hide = append(hide, `awk '{print $2}' /proc/self/mounts | while read -r m; do
  case " $m " in " /dev "|" /dev/"*|" /proc "|" /proc/"*|" /sys "|" /sys/"*) continue ;; esac
  case " $WRITABLE " in *" $m "*) continue ;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true # a mount hidden under another: not reachable anyway
done
for d in /etc /usr/local/bin /var/lib; do
  if touch "$d/.godwit-rw" 2>/dev/null; then rm -f "$d/.godwit-rw"; echo "ProtectSystem=strict: $d is writable" >&2; exit 1; fi
done`)
		hide = append([]string{"WRITABLE='" + strings.Join(writable, " ") + "'"}, hide...)
	}
	if len(hide) > 0 {
		argv = append([]string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", strings.Join(hide, "\n") + "\nexec \"$@\"", "sh"}, argv...)
	}
	a := m.enter(argv...)
	cmd := exec.Command(a[0], a[1:]...)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	s := &service{unit: &u, cmd: cmd, log: filepath.Join(m.lab.dir, "logs", m.name+"-"+name+".log"), done: make(chan struct{})}
	if err := os.MkdirAll(filepath.Dir(s.log), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	m.services[name] = s
	return nil
}

// reload runs the unit's ExecReload lines, with $MAINPID; a unit that is
// not running cannot be reloaded.
func (m *machine) reload(name string) error {
	s := m.services[name]
	if s == nil || !s.running() {
		return fmt.Errorf("%s.service is not active, cannot reload", name)
	}
	env, err := m.environment(*s.unit)
	if err != nil {
		return err
	}
	env["MAINPID"] = strconv.Itoa(s.cmd.Process.Pid)
	for _, line := range (*s.unit)["ExecReload"] {
		if out, err := m.output(nil, expand(line, env)...); err != nil {
			return fmt.Errorf("ExecReload: %v %s", err, out)
		}
	}
	return nil
}

// stopUnit sends the unit SIGTERM and waits for it (SIGKILL after
// TimeoutStopSec, as systemd does).
func (m *machine) stopUnit(name string) error {
	s := m.services[name]
	if s == nil || !s.running() {
		return nil
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	timeout := 90 * time.Second
	if v, err := time.ParseDuration(strings.TrimSpace((*s.unit).get("TimeoutStopSec")) + "s"); err == nil {
		timeout = v
	}
	select {
	case <-s.done:
		return nil
	case <-time.After(timeout):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM: killed", name, timeout)
	}
}

// stop ends everything the machine runs: its services, then what its
// blocks left in the background.
func (m *machine) stop() {
	for name := range m.services {
		if err := m.stopUnit(name); err != nil {
			m.lab.t.Error(err)
		}
	}
	for _, pgid := range m.groups {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	for _, pgid := range m.groups {
		for deadline := time.Now().Add(30 * time.Second); !errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				m.lab.t.Errorf("process group %d on %s still there 30 s after SIGKILL", pgid, m.name)
				break
			}
		}
	}
}

// mustRun runs a command on this machine and fails the test if it fails.
func mustRun(t testing.TB, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// run runs a cleanup command, reporting a failure without stopping.
func run(t testing.TB, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}
