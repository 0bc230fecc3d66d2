package tunnel

import "testing"

// TestServerNoDelay has no t.Parallel: TestNoLeak counts every goroutine
// of this package as a leak.
func TestServerNoDelay(t *testing.T) {
	tests := []struct {
		name, version, want string
	}{
		{"debian 12", "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", ""},
		{"9.9", "SSH-2.0-OpenSSH_9.9", ""},
		{"10.0", "SSH-2.0-OpenSSH_10.0p2", ""},
		{"10.1", "SSH-2.0-OpenSSH_10.1p1 Debian-1", noDelayServer},
		{"10.2", "SSH-2.0-OpenSSH_10.2", noDelayServer},
		{"11", "SSH-2.0-OpenSSH_11.0", noDelayServer},
		{"dropbear", "SSH-2.0-dropbear_2022.83", noDelayNotTried},
		{"garbled", "SSH-2.0-OpenSSH_x", noDelayNotTried},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := serverNoDelay([]byte(tt.version)); got != tt.want {
				t.Errorf("serverNoDelay(%q) = %q, want %q", tt.version, got, tt.want)
			}
		})
	}
}
