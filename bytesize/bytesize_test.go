package bytesize_test

import (
	"testing"

	"github.com/godwit/godwit/bytesize"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"52428800", 52428800, true},
		{"512K", 512 << 10, true},
		{"512k", 512 << 10, true},
		{"50M", 50 << 20, true},
		{"1G", 1 << 30, true},
		{"", 0, false},
		{"M", 0, false},
		{"-1", 0, false},
		{"1.5M", 0, false},
		{"10MB", 0, false},
		{"5T", 0, false},
		{"9000000000G", 0, false},
	}
	for _, tt := range tests {
		got, err := bytesize.Parse(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("Parse(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
