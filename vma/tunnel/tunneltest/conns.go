package tunneltest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/godwit/godwit/testkit"
)

// KillConnection kills the sshd processes serving the one client
// connection whose end is clientAddr (the client's 127.0.0.1:port), found
// by the socket they hold, and returns how many it killed: that client is
// cut off, every other connection stays up.
func (s *SSHD) KillConnection(clientAddr string) (int, error) {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return 0, fmt.Errorf("kill connection %s: sshd not running", clientAddr)
	}
	inode, err := socketInode(s.Addr, clientAddr)
	if err != nil {
		return 0, err
	}
	target := fmt.Sprintf("socket:[%s]", inode)
	n := 0
	for _, p := range testkit.Descendants(cmd.Process.Pid) {
		dir := fmt.Sprintf("/proc/%d/fd", p.PID)
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // gone
		}
		for _, fd := range fds {
			if link, err := os.Readlink(dir + "/" + fd.Name()); err == nil && link == target {
				if syscall.Kill(p.PID, syscall.SIGKILL) == nil {
					n++
				}
				break
			}
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("kill connection %s: no sshd process holds its socket (inode %s)", clientAddr, inode)
	}
	return n, nil
}

// socketInode finds in /proc/net/tcp the inode of the established IPv4
// socket from local to remote (both host:port).
func socketInode(local, remote string) (string, error) {
	want := func(addr string) (string, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return "", err
		}
		ip := net.ParseIP(host).To4()
		p, err := strconv.Atoi(port)
		if ip == nil || err != nil {
			return "", fmt.Errorf("%s: want an IPv4 host:port", addr)
		}
		// The kernel prints the address in host byte order (little endian here).
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], p), nil
	}
	l, err := want(local)
	if err != nil {
		return "", err
	}
	r, err := want(remote)
	if err != nil {
		return "", err
	}
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
		if len(fields) >= 10 && fields[1] == l && fields[2] == r && fields[3] == "01" {
			return fields[9], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no established connection from %s to %s in /proc/net/tcp", local, remote)
}
