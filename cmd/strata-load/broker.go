package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	brokerStartTimeout = 30 * time.Second
	brokerStopTimeout  = 15 * time.Second
)

// brokerProc is a strata broker process started by this tool.
type brokerProc struct {
	cmd     *exec.Cmd
	addr    string
	logPath string
	logFile *os.File
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done is closed
}

// startBroker starts `bin serve` on a free loopback port with a data
// directory under base and waits until it accepts connections.
func startBroker(ctx context.Context, bin, base, name string) (*brokerProc, error) {
	return startBrokerIn(ctx, bin, filepath.Join(base, name+"-data"), filepath.Join(base, name+".log"), nil)
}

// startBrokerIn starts `bin serve` with the given data directory (created
// if needed), log file (truncated) and extra flags on a free loopback port,
// and waits until it accepts connections.
func startBrokerIn(ctx context.Context, bin, dataDir, logPath string, extra []string) (*brokerProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	b := &brokerProc{
		addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		logPath: logPath,
		done:    make(chan struct{}),
	}
	if b.logFile, err = os.Create(b.logPath); err != nil {
		return nil, fmt.Errorf("broker log: %w", err)
	}
	args := append([]string{"serve", "--listen", b.addr, "--data-dir", dataDir, "--log-level", "warn"}, extra...)
	b.cmd = exec.Command(bin, args...)
	b.cmd.Stdout = b.logFile
	b.cmd.Stderr = b.logFile
	// The broker gets its own process group so that Stop also reaches the
	// children of a wrapper script, and the kernel kills it if this tool
	// dies without cleaning up.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		b.logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		b.waitErr = b.cmd.Wait()
		close(b.done)
	}()
	if err := b.waitReady(ctx); err != nil {
		b.Stop()
		return nil, err
	}
	return b, nil
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls the broker's port until it accepts a connection, the
// process exits or brokerStartTimeout passes.
func (b *brokerProc) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, brokerStartTimeout)
	defer cancel()
	for {
		conn, err := net.DialTimeout("tcp", b.addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-b.done:
			return fmt.Errorf("broker exited before listening (%v): %s", b.waitErr, b.logTail(10))
		case <-ctx.Done():
			return fmt.Errorf("broker not listening on %s: %w", b.addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Pid returns the broker's process id.
func (b *brokerProc) Pid() int { return b.cmd.Process.Pid }

// Exited reports whether the broker process has exited, and how.
func (b *brokerProc) Exited() (bool, error) {
	select {
	case <-b.done:
		return true, b.waitErr
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the broker's process group, waits up to
// brokerStopTimeout, then kills the group. It returns an error if the broker
// had already died or did not stop in time.
func (b *brokerProc) Stop() error {
	defer b.logFile.Close()
	pgid := b.cmd.Process.Pid // the broker leads its own process group
	// Whatever happens, leave nothing of the group behind (e.g. the children
	// of a wrapper script); ESRCH when it is already empty is fine.
	defer syscall.Kill(-pgid, syscall.SIGKILL)
	if dead, err := b.Exited(); dead {
		return fmt.Errorf("broker had exited on its own: %v", err)
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-b.done:
		if b.waitErr != nil {
			return fmt.Errorf("broker exit after SIGTERM: %w: %s", b.waitErr, b.logTail(3))
		}
		return nil
	case <-time.After(brokerStopTimeout):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-b.done
		return fmt.Errorf("broker ignored SIGTERM for %v and was killed", brokerStopTimeout)
	}
}

// logProblems returns the number of warning/error lines in the broker's
// log, and up to max of the first and of the last ones.
func (b *brokerProc) logProblems(max int) (n int, first, last []string) {
	f, err := os.Open(b.logPath)
	if err != nil {
		return 0, nil, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") &&
			!strings.Contains(line, "panic") {
			continue
		}
		n++
		if len(first) < max {
			first = append(first, line)
			continue
		}
		last = append(last, line)
		if len(last) > max {
			last = last[1:]
		}
	}
	return n, first, last
}

// foreignLines counts the lines of the broker's log that its structured
// logger did not write (no level= field), e.g. a library printing to
// stderr, and returns the first of them.
func (b *brokerProc) foreignLines() (n int, first string) {
	f, err := os.Open(b.logPath)
	if err != nil {
		return 0, ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.Contains(line, "level=") || strings.Contains(line, `"level":`) {
			continue
		}
		if n++; n == 1 {
			first = line
		}
	}
	return n, first
}

// logTail returns the last n lines of the broker's log joined by " | ".
func (b *brokerProc) logTail(n int) string { return tailOf(b.logPath, n) }

// reportLog prints the broker's first and last warnings and errors to
// stderr.
func (b *brokerProc) reportLog(name string) {
	n, first, last := b.logProblems(5)
	if n == 0 {
		return
	}
	logf("%s: broker logged %d warning/error lines:", name, n)
	for _, l := range first {
		fmt.Fprintln(os.Stderr, "    ", l)
	}
	if len(last) > 0 {
		fmt.Fprintln(os.Stderr, "     ...")
	}
	for _, l := range last {
		fmt.Fprintln(os.Stderr, "    ", l)
	}
}

// alive returns an error, with the end of the broker's log, once the
// broker process has exited.
func (b *brokerProc) alive() error {
	if dead, err := b.Exited(); dead {
		return fmt.Errorf("broker exited (%v): %s", err, b.logTail(5))
	}
	return nil
}
