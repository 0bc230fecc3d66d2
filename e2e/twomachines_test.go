package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The two machines of the README's "Deploying on two machines", as the
// test lays them out: the OMA and the VMA on a veth pair, each resolving
// the names the README uses through its own /etc/hosts.
var twoMachinesHosts = map[string]string{
	"oma": "10.231.0.1 oma.example.com\n",
	"vma": "10.231.0.1 oma.example.com\n10.231.0.2 vma.example.com\n",
}

// TestTwoMachines runs the README's "Deploying on two machines" as written,
// block by block in its order, on two machines made of network namespaces
// joined by a veth pair, the VMA reaching the OMA only through the OMA's
// sshd. Each machine has its own /etc, /root, /usr/local and /var (overlays
// over this machine's, thrown away at the end) and /run, so useradd, the
// units and /etc/godwit are the machine's own and this machine is left as
// it was. Where the README says systemctl, a stand-in in PATH asks the test,
// which runs the unit's ExecStart by hand (as systemd would, with its User,
// Environment, EnvironmentFile, UMask, StateDirectory and RuntimeDirectory);
// ssh.service runs from the start, as on a Debian with openssh-server. The
// workstation's commands (make build, scp) are carried out by the test. It
// ends with the README's "check it works": both healths and a discovery
// through localhost:9081 on the OMA, against the simulator on the VMA.
func TestTwoMachines(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the two-machine deployment builds and runs both appliances")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes network namespaces, mounts and users (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (Debian's iproute2) for the network namespaces: scripts/install-deps.sh installs it")
	}
	for _, tool := range []string{"nsenter", "unshare", "setpriv", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (util-linux): %v", tool, err)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := twoMachineBlocks(readme)
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}

	lab := newLab(t)
	workstation := filepath.Join(lab.dir, "workstation")
	if err := os.MkdirAll(workstation, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "scripts"), filepath.Join(workstation, "scripts")); err != nil {
		t.Fatal(err)
	}
	machines := map[string]*machine{}
	for _, name := range []string{"oma", "vma"} {
		machines[name] = lab.machine(name, twoMachinesHosts[name])
	}
	lab.link(machines["oma"], "10.231.0.1/24", machines["vma"], "10.231.0.2/24")
	// A Debian with openssh-server runs sshd from the start.
	if err := machines["oma"].systemctl("start ssh"); err != nil {
		t.Fatal(err)
	}

	var last = map[string]string{}
	for i, b := range blocks {
		t.Logf("block %d (%s %s):\n%s", i+1, b.where, b.kind, b.text)
		switch {
		case b.kind == "packages":
			checkPackages(t, b)
		case b.where == "workstation":
			runWorkstation(t, b, root, workstation, machines)
		default:
			m := machines[b.where]
			if m == nil {
				t.Fatalf("block %d: no machine %q", i+1, b.where)
			}
			out, err := m.script(fmt.Sprintf("%02d-%s", i+1, b.where), b.text)
			t.Logf("block %d on %s printed:\n%s", i+1, b.where, out)
			if err != nil {
				lab.logServices()
				t.Fatalf("block %d on %s: %v", i+1, b.where, err)
			}
			last[b.where] = out
		}
	}

	// The README's "check it works" ran last on each machine: what it
	// printed says the appliances are up and talking.
	for _, want := range []struct{ where, what string }{
		{"vma", `"status":"ok"`},
		{"vma", "vcsim ready"},
		{"oma", `"connected_vmas":["vma-1"]`},
		{"oma", `"name":"PGWINTESTBIOS"`},
	} {
		if !strings.Contains(last[want.where], want.what) {
			lab.logServices()
			t.Errorf("the last block on the %s printed no %s", want.where, want.what)
		}
	}
	// The VMA reaches the OMA only through the OMA's sshd: its NATS and
	// its NBD ports are loopback only.
	for _, port := range []string{"4222", "10100", "9081"} {
		if out, err := machines["vma"].script("probe-"+port, "exec 3<>/dev/tcp/10.231.0.1/"+port); err == nil {
			t.Errorf("the VMA reached the OMA's port %s without the tunnel: %s", port, out)
		}
	}
}

// block is one fenced shell block of the two-machine section, with where
// its marker says it runs: "workstation", "oma" or "vma", and the kind
// ("packages" for the Debian packages the machine needs).
type block struct {
	where, kind, text string
}

var markerRE = regexp.MustCompile("(?m)^<!-- two-machines:")

var blockRE = regexp.MustCompile("(?s)<!-- two-machines: (\\w+)(?: (\\w+))? -->\n```sh\n(.*?)```\n")

// twoMachineBlocks returns the marked blocks of the README's "Deploying on
// two machines" section, in order.
func twoMachineBlocks(readme []byte) ([]block, error) {
	s := string(readme)
	start := strings.Index(s, "\n## Deploying on two machines\n")
	if start < 0 {
		return nil, fmt.Errorf("README.md has no section Deploying on two machines")
	}
	end := strings.Index(s[start+1:], "\n## ")
	if end < 0 {
		end = len(s) - start - 1
	}
	section := s[start : start+1+end]
	var blocks []block
	for _, m := range blockRE.FindAllStringSubmatch(section, -1) {
		b := block{where: m[1], text: m[3]}
		if m[2] != "" {
			b.where, b.kind = m[2], m[1]
		}
		blocks = append(blocks, b)
	}
	if n := len(markerRE.FindAllString(section, -1)); n != len(blocks) || len(blocks) == 0 {
		return nil, fmt.Errorf("the section has %d markers, %d of them before a ```sh block", n, len(blocks))
	}
	return blocks, nil
}

// checkPackages checks that the Debian packages of an apt-get install
// block are installed here: the test runs on this machine's binaries, and
// never installs anything from inside a machine.
func checkPackages(t *testing.T, b block) {
	t.Helper()
	_, after, ok := strings.Cut(b.text, "apt-get install")
	if !ok {
		t.Fatalf("a packages block without apt-get install:\n%s", b.text)
	}
	var missing []string
	for _, word := range strings.Fields(after) {
		if strings.HasPrefix(word, "#") || word == "&&" || word == ";" {
			break
		}
		if strings.HasPrefix(word, "-") {
			continue
		}
		out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", word).Output()
		if err != nil || !bytes.Contains(out, []byte("install ok installed")) {
			missing = append(missing, word)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("the %s needs Debian packages that are not installed here: %s (scripts/install-deps.sh installs them)", b.where, strings.Join(missing, " "))
	}
}

// runWorkstation carries out a workstation block: `make build` (after
// the VAR=value words before it) builds into the workstation's bin/, and each `scp [-3] SRC... DST` copies
// between the workstation and the machines' /root.
func runWorkstation(t *testing.T, b block, root, workstation string, machines map[string]*machine) {
	t.Helper()
	for _, line := range strings.Split(b.text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		words := strings.Fields(line)
		var env []string // VAR=value before the command
		for len(words) > 0 && envWordRE.MatchString(words[0]) {
			env, words = append(env, words[0]), words[1:]
		}
		switch {
		case len(words) == 0:
		case len(words) == 2 && words[0] == "make" && words[1] == "build":
			start := time.Now()
			cmd := exec.Command("make", "build", "BIN="+filepath.Join(workstation, "bin"))
			cmd.Dir, cmd.Env = root, append(os.Environ(), env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("make build: %v\n%s", err, out)
			}
			t.Logf("make build: %v", time.Since(start).Round(time.Second))
		case words[0] == "scp":
			args := words[1:]
			if len(args) > 0 && args[0] == "-3" {
				args = args[1:]
			}
			if len(args) < 2 {
				t.Fatalf("scp needs a source and a destination: %q", line)
			}
			dst := args[len(args)-1]
			for _, src := range args[:len(args)-1] {
				data, mode := readOperand(t, src, workstation, machines)
				writeOperand(t, dst, path.Base(operandPath(src)), data, mode, machines)
			}
		default:
			t.Fatalf("the test carries out only make build and scp on the workstation, not %q", line)
		}
	}
}

// envWordRE matches a VAR=value word before a command.
var envWordRE = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)

// operandPath is the path part of an scp operand, host:path or path.
func operandPath(op string) string {
	if _, p, ok := strings.Cut(op, ":"); ok {
		return p
	}
	return op
}

// operandMachine returns the machine of root@host.example.com:path and the
// path made absolute in root's home; nil for a workstation path.
func operandMachine(t *testing.T, op string, machines map[string]*machine) (*machine, string) {
	t.Helper()
	host, p, ok := strings.Cut(op, ":")
	if !ok {
		return nil, op
	}
	user, host, ok := strings.Cut(host, "@")
	if !ok || user != "root" {
		t.Fatalf("scp operand %q: want root@host:path", op)
	}
	m := machines[strings.TrimSuffix(host, ".example.com")]
	if m == nil {
		t.Fatalf("scp operand %q: no such machine", op)
	}
	if !path.IsAbs(p) {
		p = path.Join("/root", p)
	}
	return m, p
}

func readOperand(t *testing.T, op, workstation string, machines map[string]*machine) ([]byte, string) {
	t.Helper()
	m, p := operandMachine(t, op, machines)
	if m == nil {
		data, err := os.ReadFile(filepath.Join(workstation, p))
		if err != nil {
			t.Fatalf("scp: %v", err)
		}
		info, err := os.Stat(filepath.Join(workstation, p))
		if err != nil {
			t.Fatal(err)
		}
		return data, fmt.Sprintf("%o", info.Mode().Perm())
	}
	mode, err := m.output(nil, "stat", "-c", "%a", p)
	if err != nil {
		t.Fatalf("scp %s: %v", op, err)
	}
	data, err := m.output(nil, "cat", p)
	if err != nil {
		t.Fatalf("scp %s: %v", op, err)
	}
	return data, strings.TrimSpace(string(mode))
}

func writeOperand(t *testing.T, op, base string, data []byte, mode string, machines map[string]*machine) {
	t.Helper()
	m, p := operandMachine(t, op, machines)
	if m == nil {
		t.Fatalf("scp to the workstation (%s) is not in the README", op)
	}
	if strings.HasSuffix(op, ":") || strings.HasSuffix(p, "/") {
		p = path.Join(p, base)
	}
	if _, err := m.output(data, "sh", "-c", `umask 077 && cat > "$1" && chmod "$2" "$1"`, "sh", p, mode); err != nil {
		t.Fatalf("scp to %s: %v", op, err)
	}
}
