package vddk

import (
	"bytes"
	"sync"
)

// tailMax is how much of nbdkit's output a tail keeps.
const tailMax = 16 << 10

// tail keeps the last tailMax bytes a process writes, for error messages.
// It is safe for concurrent use.
type tail struct {
	mu sync.Mutex
	b  []byte
}

// Write keeps the end of p and what came before it, up to tailMax bytes.
func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - tailMax; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

// String returns what was kept, without surrounding white space.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}
