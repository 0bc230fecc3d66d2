// Package bytesize parses byte counts as people write them on command
// lines: 52428800, 50M, 512K, 1G (powers of 1024).
package bytesize

import (
	"fmt"
	"strconv"
	"strings"
)

// Parse returns the bytes s names: digits with an optional K (or k), M or
// G suffix, each 1024 times the one before. It refuses a negative count,
// anything else after the digits, and a count past 2^62.
func Parse(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"), strings.HasSuffix(s, "k"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	}
	digits := s
	if mult > 1 {
		digits = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("not a byte count: %q (digits, with an optional K, M or G)", s)
	}
	return n * mult, nil
}
