package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	miniocreds "github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	gwStartTimeout = 20 * time.Second
	gwStopTimeout  = 5 * time.Second
	gwRegion       = "us-east-1"
)

// findVersityGW returns the versitygw binary: the flag's value, else
// $VERSITYGW_BIN, else <repo>/bin/versitygw, else versitygw on PATH (the
// same order as the tests' tier/objstore/objstoretest).
func findVersityGW(flagValue string) (string, error) {
	for _, p := range []string{flagValue, os.Getenv("VERSITYGW_BIN")} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("versitygw %s: %w", p, err)
		}
		return p, nil
	}
	if dir, err := os.Getwd(); err == nil {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				p := filepath.Join(dir, "bin", "versitygw")
				if _, err := os.Stat(p); err == nil {
					return p, nil
				}
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	p, err := exec.LookPath("versitygw")
	if err != nil {
		return "", errors.New("versitygw (Versity S3 Gateway) not found in -versitygw, $VERSITYGW_BIN, <repo>/bin or PATH; run `make tools` to install it")
	}
	return p, nil
}

// gateway is a versitygw process serving its posix backend on loopback.
type gateway struct {
	endpoint  string // http://127.0.0.1:<port>
	host      string // 127.0.0.1:<port>
	accessKey string
	secretKey string
	cmd       *exec.Cmd
	logFile   *os.File
	done      chan struct{}
}

// startGateway starts `versitygw --port 127.0.0.1:<free> ... posix
// --sidecar <dir>/meta <dir>/data` and waits until it answers HTTP.
func startGateway(ctx context.Context, bin, dir string) (*gateway, error) {
	data, meta := filepath.Join(dir, "data"), filepath.Join(dir, "meta")
	for _, d := range []string{data, meta} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("versitygw dir: %w", err)
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	g := &gateway{
		host:      net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		accessKey: "strata-bench-" + randHex(4),
		secretKey: randHex(16),
		done:      make(chan struct{}),
	}
	g.endpoint = "http://" + g.host
	if g.logFile, err = os.Create(filepath.Join(dir, "versitygw.log")); err != nil {
		return nil, fmt.Errorf("versitygw log: %w", err)
	}
	g.cmd = exec.Command(bin, "--port", g.host, "--access", g.accessKey, "--secret", g.secretKey,
		"--region", gwRegion, "--quiet", "posix", "--sidecar", meta, data)
	g.cmd.Stdout, g.cmd.Stderr = g.logFile, g.logFile
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		g.logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		_ = g.cmd.Wait()
		close(g.done)
	}()
	deadline := time.Now().Add(gwStartTimeout)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(g.endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return g, nil
		}
		select {
		case <-g.done:
			g.stop()
			return nil, fmt.Errorf("versitygw exited before answering: %s", tailOf(g.logFile.Name(), 5))
		case <-ctx.Done():
			g.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("versitygw did not answer on %s within %v: %v", g.host, gwStartTimeout, err)
		}
	}
}

// stop ends the gateway's process group (SIGTERM, then SIGKILL).
func (g *gateway) stop() {
	defer g.logFile.Close()
	pgid := g.cmd.Process.Pid
	defer syscall.Kill(-pgid, syscall.SIGKILL)
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(gwStopTimeout):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-g.done
	}
}

// minio returns a minio-go client for the gateway at host (the gateway
// itself, or the counting proxy in front of it).
func (g *gateway) minio(host string) (*minio.Client, error) {
	return minio.New(host, &minio.Options{
		Creds:        miniocreds.NewStaticV4(g.accessKey, g.secretKey, ""),
		Region:       gwRegion,
		BucketLookup: minio.BucketLookupPath,
	})
}

// tailOf returns the last n lines of a file joined by " | ".
func tailOf(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// reqClass names an S3 request kind as the proxy sees it.
type reqClass string

const (
	reqGet          reqClass = "GET"             // whole object
	reqGetRange     reqClass = "GET range"       // Range header
	reqHead         reqClass = "HEAD"            // HeadObject / HeadBucket
	reqList         reqClass = "LIST"            // ListObjects(V2), ListMultipartUploads, ListParts
	reqPut          reqClass = "PUT"             // PutObject (also CreateBucket)
	reqPutPart      reqClass = "PUT part"        // UploadPart
	reqMPUCreate    reqClass = "POST create-mpu" // CreateMultipartUpload
	reqMPUComplete  reqClass = "POST complete"   // CompleteMultipartUpload
	reqDelete       reqClass = "DELETE"          // DeleteObject, AbortMultipartUpload, DeleteObjects
	reqOther        reqClass = "other"
	keyKindSegment           = "seg"
	keyKindManifest          = "manifest"
	keyKindProbe             = "probe" // the broker's conditional-create probe at start
	keyKindOther             = "other"
)

// classify returns the request's class and the kind of key it names.
func classify(r *http.Request) (reqClass, string) {
	q := r.URL.Query()
	kind := keyKindOther
	switch p := r.URL.Path; {
	case strings.Contains(p, "/seg/"):
		kind = keyKindSegment
	case strings.Contains(p, "/manifest/"):
		kind = keyKindManifest
	case strings.Contains(p, "/_strata/probe/"):
		kind = keyKindProbe
	}
	has := func(k string) bool { _, ok := q[k]; return ok }
	// Path-style: /<bucket> is the bucket, /<bucket>/<key> an object.
	bucketOnly := strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 0
	switch r.Method {
	case http.MethodGet:
		switch {
		case has("list-type") || has("uploads") || has("uploadId") || (bucketOnly && !has("location")):
			return reqList, kind
		case r.Header.Get("Range") != "":
			return reqGetRange, kind
		default:
			return reqGet, kind
		}
	case http.MethodHead:
		return reqHead, kind
	case http.MethodPut:
		if has("partNumber") && has("uploadId") {
			return reqPutPart, kind
		}
		return reqPut, kind
	case http.MethodPost:
		switch {
		case has("uploads"):
			return reqMPUCreate, kind
		case has("uploadId"):
			return reqMPUComplete, kind
		case has("delete"):
			return reqDelete, kind
		}
	case http.MethodDelete:
		return reqDelete, kind
	}
	return reqOther, kind
}

// opStat counts one (class, key kind) pair.
type opStat struct {
	calls, errors, bytesIn, bytesOut int64
}

// reqCounts is a snapshot of the proxy's counters.
type reqCounts map[reqClass]map[string]opStat

// sub returns c - prev.
func (c reqCounts) sub(prev reqCounts) reqCounts {
	out := reqCounts{}
	for cl, kinds := range c {
		for k, s := range kinds {
			p := prev[cl][k]
			d := opStat{s.calls - p.calls, s.errors - p.errors, s.bytesIn - p.bytesIn, s.bytesOut - p.bytesOut}
			if d == (opStat{}) {
				continue
			}
			if out[cl] == nil {
				out[cl] = map[string]opStat{}
			}
			out[cl][k] = d
		}
	}
	return out
}

// calls returns the calls of the classes, for any key kind if kinds is
// empty, else for those kinds.
func (c reqCounts) calls(classes []reqClass, kinds ...string) int64 {
	var n int64
	for _, cl := range classes {
		for k, s := range c[cl] {
			if len(kinds) == 0 || contains(kinds, k) {
				n += s.calls
			}
		}
	}
	return n
}

// errors returns the requests answered with status 400 or more.
func (c reqCounts) errorCount() int64 {
	var n int64
	for _, kinds := range c {
		for _, s := range kinds {
			n += s.errors
		}
	}
	return n
}

// total returns every call.
func (c reqCounts) total() int64 {
	var n int64
	for _, kinds := range c {
		for _, s := range kinds {
			n += s.calls
		}
	}
	return n
}

// String formats the counts, e.g. "PUT part 12 (seg), POST complete 3 (seg)".
func (c reqCounts) String() string {
	var parts []string
	for cl, kinds := range c {
		for k, s := range kinds {
			if s.calls == 0 && s.errors == 0 {
				continue // only the tail of an earlier response's bytes
			}
			p := fmt.Sprintf("%s %s %d", cl, k, s.calls)
			if s.errors > 0 {
				p += fmt.Sprintf(" (%d failed)", s.errors)
			}
			parts = append(parts, p)
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// putClasses are S3's PUT-class (billed as PUT, COPY, POST, LIST) write
// requests, without LIST, which is shown on its own.
var putClasses = []reqClass{reqPut, reqPutPart, reqMPUCreate, reqMPUComplete}

// getClasses are object reads.
var getClasses = []reqClass{reqGet, reqGetRange, reqHead}

// countingProxy is an HTTP reverse proxy in front of the gateway that
// counts requests by class and key kind, and their payload bytes. The
// broker's SigV4 signatures stay valid: the proxy forwards the Host header
// the client signed.
type countingProxy struct {
	host string // 127.0.0.1:<port>
	srv  *http.Server
	ln   net.Listener

	mu     sync.Mutex
	counts map[reqClass]map[string]*atomicStat

	// shape, when set, makes the proxy behave like a remote object store:
	// every request waits shape.latency before it is forwarded, and each
	// response body is paced to shape.bytesPerSec.
	shape atomic.Pointer[storeShape]
}

// storeShape is the latency and per-connection bandwidth the proxy adds.
type storeShape struct {
	latency     time.Duration
	bytesPerSec float64
}

func (s *storeShape) String() string {
	return fmt.Sprintf("%v first-byte latency, %.0f MB/s per request", s.latency, s.bytesPerSec/1e6)
}

// setShape turns shaping on (nil: off).
func (p *countingProxy) setShape(s *storeShape) { p.shape.Store(s) }

type atomicStat struct{ calls, errors, bytesIn, bytesOut atomic.Int64 }

// startProxy listens on a free loopback port and forwards to target.
func startProxy(target string) (*countingProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	p := &countingProxy{host: ln.Addr().String(), ln: ln, counts: map[reqClass]map[string]*atomicStat{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	rp.BufferPool = bufPool{}
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cl, kind := classify(r)
			st := p.stat(cl, kind)
			st.calls.Add(1)
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = &countingBody{ReadCloser: r.Body, n: &st.bytesIn}
			}
			var rw http.ResponseWriter = w
			if sh := p.shape.Load(); sh != nil {
				select {
				case <-time.After(sh.latency):
				case <-r.Context().Done():
					return
				}
				rw = &pacedWriter{ResponseWriter: w, rate: sh.bytesPerSec, start: time.Now()}
			}
			cw := &countingWriter{ResponseWriter: rw, n: &st.bytesOut}
			rp.ServeHTTP(cw, r)
			if cw.status >= 400 {
				st.errors.Add(1)
			}
		}),
		ReadHeaderTimeout: 30 * time.Second,
	}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *countingProxy) stat(cl reqClass, kind string) *atomicStat {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.counts[cl]
	if m == nil {
		m = map[string]*atomicStat{}
		p.counts[cl] = m
	}
	s := m[kind]
	if s == nil {
		s = &atomicStat{}
		m[kind] = s
	}
	return s
}

// snapshot returns the counters so far.
func (p *countingProxy) snapshot() reqCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := reqCounts{}
	for cl, kinds := range p.counts {
		out[cl] = map[string]opStat{}
		for k, s := range kinds {
			out[cl][k] = opStat{s.calls.Load(), s.errors.Load(), s.bytesIn.Load(), s.bytesOut.Load()}
		}
	}
	return out
}

// close stops the proxy.
func (p *countingProxy) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

type countingWriter struct {
	http.ResponseWriter
	n      *atomic.Int64
	status int
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// Flush lets the reverse proxy flush streamed responses.
func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// pacedWriter holds a response body to rate bytes per second from start.
type pacedWriter struct {
	http.ResponseWriter
	rate  float64
	start time.Time
	n     int64
}

func (w *pacedWriter) Write(p []byte) (int, error) {
	// Write in slices of at most 64 KiB so that the pace is smooth.
	written := 0
	for len(p) > 0 {
		c := p[:min(len(p), 64<<10)]
		n, err := w.ResponseWriter.Write(c)
		written += n
		w.n += int64(n)
		if err != nil {
			return written, err
		}
		p = p[n:]
		if due := w.start.Add(time.Duration(float64(w.n) / w.rate * float64(time.Second))); time.Until(due) > 0 {
			if f, ok := w.ResponseWriter.(http.Flusher); ok {
				f.Flush()
			}
			time.Sleep(time.Until(due))
		}
	}
	return written, nil
}

func (w *pacedWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// bufPool gives the reverse proxy 256 KiB copy buffers.
type bufPool struct{}

var proxyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

func (bufPool) Get() []byte  { return *(proxyBufs.Get().(*[]byte)) }
func (bufPool) Put(b []byte) { proxyBufs.Put(&b) }
