package tunneltest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/godwit/godwit/testkit"
)

// NoDelay reports whether sshd set TCP_NODELAY on its end of the
// connection from the client's local address client (host:port, such as
// tunnel.State's LocalAddr). It reads the option of sshd's very socket: it
// finds the socket's inode in /proc/net/tcp, the sshd process and
// descriptor holding it in /proc/PID/fd, duplicates that descriptor into
// this process (pidfd_open, pidfd_getfd) and reads it with getsockopt. `ss`
// does not show the option. pidfd_getfd needs CAP_SYS_PTRACE over sshd,
// which makes itself non-dumpable: run it as root.
func (s *SSHD) NoDelay(client string) (bool, error) {
	_, clientPort, err := net.SplitHostPort(client)
	if err != nil {
		return false, fmt.Errorf("client address %q: %w", client, err)
	}
	inode, err := tcpInode(portOf(s.Addr), clientPort)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return false, fmt.Errorf("sshd not running")
	}
	pid, fd, err := socketHolder(testkit.Descendants(cmd.Process.Pid), inode)
	if err != nil {
		return false, err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false, fmt.Errorf("pidfd_open sshd %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return false, fmt.Errorf("pidfd_getfd sshd %d fd %d (needs CAP_SYS_PTRACE): %w", pid, fd, err)
	}
	defer unix.Close(dup)
	v, err := unix.GetsockoptInt(dup, unix.IPPROTO_TCP, unix.TCP_NODELAY)
	if err != nil {
		return false, fmt.Errorf("getsockopt TCP_NODELAY of sshd %d fd %d: %w", pid, fd, err)
	}
	return v != 0, nil
}

// tcpInode returns the inode of the established IPv4 TCP socket from local
// port to remote port, from /proc/net/tcp.
func tcpInode(local, remote string) (string, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return "", fmt.Errorf("tcp sockets: %w", err)
	}
	defer f.Close()
	lp, err1 := strconv.Atoi(local)
	rp, err2 := strconv.Atoi(remote)
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("ports %q and %q: want numbers", local, remote)
	}
	wantL, wantR := fmt.Sprintf(":%04X", lp), fmt.Sprintf(":%04X", rp)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "01" {
			continue
		}
		if strings.HasSuffix(fields[1], wantL) && strings.HasSuffix(fields[2], wantR) {
			return fields[9], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("tcp sockets: %w", err)
	}
	return "", fmt.Errorf("no established socket from port %s to port %s in /proc/net/tcp", local, remote)
}

// socketHolder returns the process among procs and its descriptor that
// hold the socket with inode.
func socketHolder(procs []testkit.Process, inode string) (pid, fd int, err error) {
	want := "socket:[" + inode + "]"
	for _, p := range procs {
		dir := filepath.Join("/proc", strconv.Itoa(p.PID), "fd")
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, e := range entries {
			if link, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && link == want {
				n, err := strconv.Atoi(e.Name())
				if err == nil {
					return p.PID, n, nil
				}
			}
		}
	}
	return 0, 0, fmt.Errorf("no sshd process holds %s", want)
}
