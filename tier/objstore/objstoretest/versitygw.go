package objstoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-io/strata/tier/objstore/s3"
)

// VersityGW is a Versity S3 Gateway (github.com/versity/versitygw) running
// its posix backend on a loopback port, in temp directories, for one test.
type VersityGW struct {
	Endpoint  string // e.g. "http://127.0.0.1:40123"
	AccessKey string
	SecretKey string
	Region    string
	Args      []string // the command line it was started with
}

// FindVersityGW returns the versitygw binary: $VERSITYGW_BIN, else
// <repo>/bin/versitygw, else versitygw on PATH.
func FindVersityGW() (string, error) {
	if p := os.Getenv("VERSITYGW_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("VERSITYGW_BIN=%s: %w; unset it and run `make tools` to install versitygw into <repo>/bin", p, err)
		}
		return p, nil
	}
	if root, ok := repoRoot(); ok {
		p := filepath.Join(root, "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("versitygw")
	if err != nil {
		return "", fmt.Errorf("versitygw (Versity S3 Gateway, needed for the S3 tests) not found in $VERSITYGW_BIN, <repo>/bin or PATH; run `make tools` to install it")
	}
	return p, nil
}

// repoRoot finds the directory of the go.mod above the working directory.
func repoRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// StartVersityGW starts a gateway that lives until the test ends. It fails
// the test (it does not skip) if the binary is missing: the S3 backend must
// be tested against a real server.
//
// The command line is
//
//	versitygw --port 127.0.0.1:<free> --access <k> --secret <s> --region us-east-1 --quiet \
//	    posix --sidecar <tmp>/meta <tmp>/data
//
// --sidecar keeps object metadata in a directory instead of user xattrs, so
// it works on any temp file system (tmpfs, overlay).
func StartVersityGW(t testing.TB) *VersityGW {
	t.Helper()
	bin, err := FindVersityGW()
	if err != nil {
		t.Fatalf("objstoretest: %v", err)
	}
	tmp := t.TempDir()
	data, meta := filepath.Join(tmp, "data"), filepath.Join(tmp, "meta")
	for _, d := range []string{data, meta} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	g := &VersityGW{AccessKey: "strata-test-" + randHex(4), SecretKey: randHex(16), Region: "us-east-1"}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr, err := freeLoopbackAddr()
		if err != nil {
			t.Fatal(err)
		}
		g.Endpoint = "http://" + addr
		g.Args = []string{"--port", addr, "--access", g.AccessKey, "--secret", g.SecretKey,
			"--region", g.Region, "--quiet", "posix", "--sidecar", meta, data}
		if lastErr = g.start(t, bin); lastErr == nil {
			return g
		}
	}
	t.Fatalf("objstoretest: start versitygw: %v", lastErr)
	return nil
}

// lockedBuffer collects the gateway's output for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 64<<10 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (g *VersityGW) start(t testing.TB, bin string) error {
	out := &lockedBuffer{}
	cmd := exec.Command(bin, g.Args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // already gone if it exited
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("%s %s exited: %v\n%s", bin, strings.Join(g.Args, " "), err, out)
		default:
		}
		resp, err := client.Get(g.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("versitygw output:\n%s", out)
				}
			})
			return nil
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("%s %s did not answer within 15s: %v\n%s", bin, strings.Join(g.Args, " "), err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

// Options returns s3.Options for bucket on this gateway (path style, static
// credentials, few retries so failures surface fast).
func (g *VersityGW) Options(bucket string) s3.Options {
	return s3.Options{
		Bucket:          bucket,
		Endpoint:        g.Endpoint,
		Region:          g.Region,
		PathStyle:       true,
		AccessKeyID:     g.AccessKey,
		SecretAccessKey: g.SecretKey,
		MaxAttempts:     3,
		MaxBackoff:      200 * time.Millisecond,
	}
}

// NewStore creates a fresh bucket (named after a random suffix unless
// opts.Bucket is set) and returns an s3.Store on it; opts' connection
// fields (Endpoint, Region, PathStyle, credentials) are filled in from g.
// The store is closed when the test ends.
func (g *VersityGW) NewStore(t testing.TB, opts s3.Options) *s3.Store {
	t.Helper()
	base := g.Options(opts.Bucket)
	if base.Bucket == "" {
		base.Bucket = "strata-test-" + randHex(6)
	}
	opts.Bucket, opts.Endpoint, opts.Region, opts.PathStyle = base.Bucket, base.Endpoint, base.Region, base.PathStyle
	opts.AccessKeyID, opts.SecretAccessKey = base.AccessKeyID, base.SecretAccessKey
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts, opts.MaxBackoff = base.MaxAttempts, base.MaxBackoff
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := s3.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateBucket(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
