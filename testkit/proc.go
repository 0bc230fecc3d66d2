package testkit

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process is one process as /proc shows it.
type Process struct {
	PID, PPID, PGID int
	// Args is its command line; empty for kernel threads and for a
	// process that ended while it was read.
	Args []string
}

// CommandLine is Args joined by spaces.
func (p Process) CommandLine() string { return strings.Join(p.Args, " ") }

// List returns every process that could be read.
func List() []Process {
	dirs, _ := os.ReadDir("/proc")
	var out []Process
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue // ended meanwhile
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and
		// parentheses, so count the fields after its last ')'.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 3 {
			continue
		}
		ppid, err1 := strconv.Atoi(f[1])
		pgid, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			continue
		}
		p := Process{PID: pid, PPID: ppid, PGID: pgid}
		if cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline")); err == nil && len(cmdline) > 0 {
			p.Args = strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
		}
		out = append(out, p)
	}
	return out
}

// Descendants returns the processes below pid: its children, theirs, and so on.
func Descendants(pid int) []Process {
	all := List()
	var found []Process
	for next := []int{pid}; len(next) > 0; {
		parents := next
		next = nil
		for _, p := range all {
			for _, parent := range parents {
				if p.PPID == parent {
					found = append(found, p)
					next = append(next, p.PID)
				}
			}
		}
	}
	return found
}
