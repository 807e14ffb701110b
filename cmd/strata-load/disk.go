package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	ddTimeout     = 5 * time.Minute
	ddRuns        = 3
	syncWriteSize = 16 << 10
	// syncLoopMax bounds the fdatasync loop's duration and size.
	syncLoopMaxTime  = 10 * time.Second
	syncLoopMaxBytes = 1 << 30
)

// diskResult holds the physical write limits of the temp dir's disk.
type diskResult struct {
	ddMBps float64
	ddNote string
	ddErr  error

	syncMBps  float64
	syncsPerS float64
	syncNote  string
	syncErr   error
}

// measureDisk runs dd with conv=fdatasync and a Go loop of small writes
// each followed by fdatasync, in dir.
func measureDisk(ctx context.Context, dir string, d time.Duration) diskResult {
	var r diskResult
	r.ddMBps, r.ddNote, r.ddErr = runDDs(ctx, filepath.Join(dir, "dd.bin"), ddRuns)
	r.syncMBps, r.syncsPerS, r.syncNote, r.syncErr = syncLoop(ctx, filepath.Join(dir, "fsync.bin"), min(d, syncLoopMaxTime))
	return r
}

// runDDs runs dd n times and returns the median MB/s and every run's
// figure: on virtual disks with a host cache a single run is noisy.
func runDDs(ctx context.Context, path string, n int) (float64, string, error) {
	var speeds []float64
	var shown []string
	for range n {
		mbps, _, err := runDD(ctx, path)
		if err != nil {
			return 0, "", err
		}
		speeds = append(speeds, mbps)
		shown = append(shown, fmt.Sprintf("%.0f", mbps))
	}
	sort.Float64s(speeds)
	return speeds[len(speeds)/2], fmt.Sprintf("median of %d runs (%s MB/s)", n, strings.Join(shown, ", ")), nil
}

// runDD writes 512 MiB of zeros with dd conv=fdatasync and returns MB/s
// (10^6 bytes) computed from the byte count and time dd reports, plus dd's
// own summary.
func runDD(ctx context.Context, path string) (float64, string, error) {
	defer os.Remove(path)
	ctx, cancel := context.WithTimeout(ctx, ddTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "dd", "if=/dev/zero", "of="+path, "bs=1M", "count=512", "conv=fdatasync")
	cmd.Env = append(os.Environ(), "LC_ALL=C") // parseDD reads the English summary
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, "", fmt.Errorf("dd: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return parseDD(string(out))
}

// parseDD reads dd's summary line, e.g.
// "536870912 bytes (537 MB, 512 MiB) copied, 1.2 s, 447 MB/s".
func parseDD(out string) (float64, string, error) {
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, " copied, ") {
			continue
		}
		bytesStr, _, _ := strings.Cut(line, " ")
		_, rest, _ := strings.Cut(line, " copied, ")
		secStr, speed, _ := strings.Cut(rest, ", ")
		secStr = strings.TrimSuffix(strings.TrimSpace(secStr), " s")
		n, err1 := strconv.ParseFloat(bytesStr, 64)
		sec, err2 := strconv.ParseFloat(strings.ReplaceAll(secStr, ",", "."), 64)
		if err := errors.Join(err1, err2); err != nil {
			return 0, "", fmt.Errorf("parse dd line %q: %w", line, err)
		}
		if sec <= 0 {
			return 0, "", fmt.Errorf("dd reported %v s", sec)
		}
		return n / sec / 1e6, "dd says " + strings.TrimSpace(speed), nil
	}
	return 0, "", fmt.Errorf("no summary in dd output %q", strings.TrimSpace(out))
}

// syncLoop appends 16 KiB writes to a new file, calling fdatasync after
// each one (the pattern of an un-batched acks=-1 log), for d or 1 GiB.
// It returns MB/s, syncs per second and a note.
func syncLoop(ctx context.Context, path string, d time.Duration) (float64, float64, string, error) {
	defer os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, 0, "", fmt.Errorf("fdatasync loop: %w", err)
	}
	defer f.Close()
	buf := make([]byte, syncWriteSize)
	_, _ = rand.Read(buf)
	var n, written int64
	start := time.Now()
	for time.Since(start) < d && written < syncLoopMaxBytes && ctx.Err() == nil {
		if _, err := f.Write(buf); err != nil {
			return 0, 0, "", fmt.Errorf("fdatasync loop write: %w", err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, 0, "", fmt.Errorf("fdatasync: %w", err)
		}
		n++
		written += int64(len(buf))
	}
	el := time.Since(start)
	note := fmt.Sprintf("%d x 16 KiB in %.1fs, %.2f ms per write+sync", n, el.Seconds(), el.Seconds()*1000/float64(max(n, 1)))
	return rate(float64(written)/1e6, el), rate(float64(n), el), note, ctx.Err()
}
