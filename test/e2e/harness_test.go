// Package e2e runs real Kafka clients (franz-go, kcat) against the real
// broker: in process for most tests, and as a strata subprocess where a test
// needs to kill it.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/strata-io/strata/ingest/broker"
	"github.com/strata-io/strata/ingest/wire"
)

// inproc is a broker and server running inside the test process.
type inproc struct {
	addr string
	b    *broker.Broker
	srv  *wire.Server
	dir  string
}

type inprocOpt func(*brokerCfg, *wireCfg)

// startInproc starts a broker on a free loopback port with its data in dir
// (a fresh temp dir when empty) and stops it at the end of the test.
func startInproc(t testing.TB, dir string, opts ...inprocOpt) *inproc {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("STRATA_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	bcfg := broker.Config{
		NodeID: 0, Host: "127.0.0.1", Port: int32(port), DataDir: dir,
		AutoCreateTopics: true, NumPartitions: 1, Logger: logger, MinFreeBytes: 1 << 20,
	}
	wcfg := wire.Config{Logger: logger}
	for _, o := range opts {
		o(&bcfg, &wcfg)
	}
	b, err := broker.Open(bcfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	wcfg.Broker = b
	srv, err := wire.NewServer(wcfg)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	ip := &inproc{addr: ln.Addr().String(), b: b, srv: srv, dir: dir}
	t.Cleanup(ip.stop)
	return ip
}

func (ip *inproc) stop() {
	if ip.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ip.srv.Shutdown(ctx)
	ip.b.Close()
	ip.srv = nil
}

func newClient(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func newAdmin(t testing.TB, addr string) *kadm.Client {
	return kadm.NewClient(newClient(t, addr))
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// strataBin returns the strata binary to run: $STRATA_BIN (set by make test)
// or one built into a temp dir once per test run.
var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func strataBin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("STRATA_BIN"); p != "" {
		return p
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "strata-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "strata")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/strata").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a strata subprocess.
type proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	addr string
	dir  string
	port int
	log  *strings.Builder
	mu   *sync.Mutex
	done chan struct{}
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startProc starts `strata serve` on port with data in dir and waits until
// it accepts connections.
func startProc(t testing.TB, dir string, port int, extra ...string) *proc {
	t.Helper()
	p := launchProc(t, dir, port, extra...)
	p.waitReady()
	return p
}

// launchProc starts `strata serve` without waiting for it (brokers of one
// quorum need each other to start).
func launchProc(t testing.TB, dir string, port int, extra ...string) *proc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := append([]string{"serve", "--listen", addr, "--data-dir", dir, "--min-free-bytes", "1048576"}, extra...)
	cmd := exec.Command(strataBin(t), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{t: t, cmd: cmd, addr: addr, dir: dir, port: port, log: &strings.Builder{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

// waitReady waits until the broker accepts connections (from the test's
// goroutine).
func (p *proc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-p.done:
			p.t.Fatalf("strata exited early:\n%s", p.logs())
		case <-time.After(50 * time.Millisecond):
		}
	}
	p.t.Fatalf("strata did not listen on %s within 60s:\n%s", p.addr, p.logs())
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// kill sends SIGKILL and waits for the process to exit.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// term sends SIGTERM and waits for a clean exit.
func (p *proc) term() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill()
		return fmt.Errorf("strata did not stop within 30s after SIGTERM")
	}
	if st := p.cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("strata exited with %v:\n%s", st, p.logs())
	}
	return nil
}

type (
	brokerCfg = broker.Config
	wireCfg   = wire.Config
)
