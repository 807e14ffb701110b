// Package compat runs other projects' Kafka client test suites against the
// real strata binary. See docs/compatibility.md.
package compat

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const franzGo = "github.com/twmb/franz-go"

// kgoSkip names the kgo tests that cannot pass against strata yet, with the
// reason (docs/compatibility.md repeats it). go test's -skip takes one
// regexp; the entries are joined with '|'.
var kgoSkip = []struct{ pattern, reason string }{}

// kgoMustPass are integration tests of pkg/kgo that talk to the broker at
// KGO_SEEDS (producing, consuming, groups). The run must report each of them
// as passed, so that a suite which silently skipped or never reached the
// broker does not count as a pass.
var kgoMustPass = []string{
	"TestGroupETL",
	"TestClient_Produce",
	"TestConsumeRegex",
	"TestIssue769",
	"TestGroupSimple",
	"TestAddRemovePartitions",
	"TestDirectPartitionPurge",
	"TestTxnEtl",
}

// kgoRecords is KGO_TEST_RECORDS: how many records the ETL tests produce
// and consume (franz-go's own default is 500,000). 10,000 keeps the suite
// at about a minute on two cores.
const kgoRecords = "10000"

// TestFranzGoSuite runs franz-go's own pkg/kgo test suite, for the version
// in go.mod, against a strata subprocess.
func TestFranzGoSuite(t *testing.T) {
	bin := os.Getenv("STRATA_BIN")
	if bin == "" {
		t.Skip("STRATA_BIN is not set (make test sets it)")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	version, modDir := franzGoModule(t, ctx, goBin)
	src := filepath.Join(t.TempDir(), "franz-go")
	if err := copyTree(modDir, src); err != nil {
		t.Fatalf("copy %s: %v", modDir, err)
	}
	t.Logf("franz-go %s copied from %s to %s", version, modDir, src)

	addr := startBroker(t, bin)

	args := []string{"test", "-count=1", "-v", "-timeout", "8m"}
	if len(kgoSkip) > 0 {
		skips := make([]string, len(kgoSkip))
		for i, s := range kgoSkip {
			skips[i] = s.pattern
		}
		args = append(args, "-skip", strings.Join(skips, "|"))
	}
	cmd := exec.CommandContext(ctx, goBin, append(args, "./pkg/kgo/")...)
	cmd.Dir = src
	cmd.Env = kgoEnv(addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// On timeout kill go and the test binary it started (its process group).
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw

	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	passed := map[string]bool{}
	var failed []string
	scanned := make(chan struct{})
	passRe := regexp.MustCompile(`^--- PASS: (\S+) `)
	failRe := regexp.MustCompile(`^\s*--- FAIL: (\S+) `)
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			if m := passRe.FindStringSubmatch(line); m != nil {
				passed[m[1]] = true
			}
			if m := failRe.FindStringSubmatch(line); m != nil {
				failed = append(failed, m[1])
			}
			// Per-test progress lines are noise; results and output stay.
			if strings.HasPrefix(line, "=== ") {
				continue
			}
			t.Log(line)
		}
		io.Copy(io.Discard, pr)
	}()
	runErr := cmd.Wait()
	pw.Close()
	<-scanned
	t.Logf("franz-go %s pkg/kgo suite against strata: %v", version, time.Since(start).Round(time.Second))

	if ctx.Err() != nil {
		t.Fatalf("suite did not finish within the time limit: %v", ctx.Err())
	}
	if runErr != nil {
		t.Fatalf("go test ./pkg/kgo/ failed (%v); failed tests: %v", runErr, failed)
	}
	for _, name := range kgoMustPass {
		if !passed[name] {
			t.Errorf("%s did not report PASS: the suite did not exercise the broker", name)
		}
	}
}

// franzGoModule returns the version of franz-go that go.mod selects and its
// directory in the module cache, downloading it first if it is missing.
func franzGoModule(t *testing.T, ctx context.Context, goBin string) (version, dir string) {
	t.Helper()
	list := func() (string, string) {
		out, err := exec.CommandContext(ctx, goBin, "list", "-m", "-f", "{{.Version}} {{.Dir}}", franzGo).Output()
		if err != nil {
			t.Fatalf("go list -m %s: %v", franzGo, exitDetail(err))
		}
		f := strings.Fields(string(out))
		if len(f) == 0 {
			t.Fatalf("go list -m %s printed nothing", franzGo)
		}
		if len(f) == 1 {
			return f[0], ""
		}
		return f[0], f[1]
	}
	version, dir = list()
	if dir == "" {
		if out, err := exec.CommandContext(ctx, goBin, "mod", "download", franzGo+"@"+version).CombinedOutput(); err != nil {
			t.Fatalf("go mod download %s@%s: %v\n%s", franzGo, version, err, out)
		}
		version, dir = list()
	}
	if dir == "" {
		t.Fatalf("%s@%s has no directory in the module cache", franzGo, version)
	}
	return version, dir
}

// kgoEnv is this process's environment (GOFLAGS, GOMODCACHE, GOPROXY and
// the rest, so the copy builds from the same module cache) without any KGO_
// settings, plus the suite's settings for a single broker at addr.
func kgoEnv(addr string) []string {
	var env []string
	goflags := "-mod=mod"
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "KGO_"), strings.HasPrefix(kv, "GOWORK="):
			continue
		case strings.HasPrefix(kv, "GOFLAGS="):
			if v := strings.TrimPrefix(kv, "GOFLAGS="); v != "" {
				goflags = v + " " + goflags
			}
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"GOFLAGS="+goflags,
		"GOWORK=off",
		"KGO_SEEDS="+addr,
		"KGO_TEST_RF=1",
		"KGO_TEST_RECORDS="+kgoRecords,
		"KGO_LOG_LEVEL=none",
	)
}

// startBroker starts `strata serve` on a free loopback port with its own
// data directory, waits until it accepts connections and stops it at the
// end of the test (printing its log if the test failed).
func startBroker(t *testing.T, bin string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cmd := exec.Command(bin, "serve", "--listen", addr, "--data-dir", t.TempDir(),
		"--min-free-bytes", "1048576", "--log-level", "warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var mu sync.Mutex
	var logs bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	})
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	brokerLog := func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("strata did not stop within 30s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("strata log:\n%s", brokerLog())
		}
	})

	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr
		}
		select {
		case <-done:
			t.Fatalf("strata exited early:\n%s", brokerLog())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("strata did not listen on %s within 60s:\n%s", addr, brokerLog())
	return ""
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// copyTree copies the regular files under src to dst, writable (the module
// cache is read-only).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

func exitDetail(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Sprintf("%v: %s", err, ee.Stderr)
	}
	return err.Error()
}
