package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procStatusBytes returns a "kB" field such as VmRSS or VmHWM from
// /proc/<pid>/status, in bytes.
func procStatusBytes(pid int, field string) (int64, error) {
	return fileField(fmt.Sprintf("/proc/%d/status", pid), field)
}

// fileField reads a "field:  value kB" line from a /proc file such as
// /proc/meminfo, in bytes.
func fileField(path, field string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	return parseStatusField(bufio.NewScanner(f), field)
}

// parseStatusField finds "field:   1234 kB" in a /proc status listing.
func parseStatusField(sc *bufio.Scanner, field string) (int64, error) {
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(v), " ")
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s %q: %w", field, v, err)
		}
		if unit == "kB" {
			n *= 1024
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read status: %w", err)
	}
	return 0, fmt.Errorf("no %s in status", field)
}

// openFDs counts the entries of /proc/<pid>/fd.
func openFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("list fds: %w", err)
	}
	return len(ents), nil
}
