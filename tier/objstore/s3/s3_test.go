package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	miniocreds "github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/objstoretest"
	"github.com/strata-io/strata/tier/objstore/s3"
)

// smallParts makes multipart and paging happen at test sizes.
var smallParts = s3.Options{PartSize: s3.MinPartSize, MultipartThreshold: s3.MinPartSize, ListPageSize: 7}

func TestAcceptance(t *testing.T) {
	gw := objstoretest.StartVersityGW(t)
	objstoretest.AcceptanceTestConfig(t, objstoretest.Config{LargeSize: 12 << 20, ListKeys: 30},
		func(t *testing.T) objstore.Store { return gw.NewStore(t, smallParts) })
}

// An object written by our backend (single PUT and multipart) reads back
// byte for byte through an independent client, and vice versa.
func TestInteropMinioClient(t *testing.T) {
	gw := objstoretest.StartVersityGW(t)
	st := gw.NewStore(t, smallParts)
	ctx := context.Background()
	u, _ := url.Parse(gw.Endpoint)
	mc, err := minio.New(u.Host, &minio.Options{
		Creds:        miniocreds.NewStaticV4(gw.AccessKey, gw.SecretKey, ""),
		Region:       gw.Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{0, 1000, 11<<20 + 5} {
		key := "interop/" + strconv.FormatInt(size, 10)
		data := objstoretest.Random(uint64(size), size)
		objstoretest.MustPut(t, st, key, data)
		obj, err := mc.GetObject(ctx, bucketOf(st), key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(obj)
		obj.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("minio read of %s: %d bytes, %v; want %d identical bytes", key, len(got), err, size)
		}
	}
	data := objstoretest.Random(9, 3000)
	if _, err := mc.PutObject(ctx, bucketOf(st), "from-minio", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := objstoretest.MustGet(t, st, "from-minio"); !bytes.Equal(got, data) {
		t.Fatal("object written by minio-go reads back differently")
	}
}

func bucketOf(st *s3.Store) string { return st.Bucket() }

// A crashed multipart upload is found and aborted by the janitor.
func TestAbortIncompleteUploads(t *testing.T) {
	gw := objstoretest.StartVersityGW(t)
	st := gw.NewStore(t, smallParts)
	ctx := context.Background()
	// A body that fails after the first part leaves nothing behind...
	data := objstoretest.Random(1, 8<<20)
	body := io.MultiReader(bytes.NewReader(data[:6<<20]), &failing{})
	if err := st.Put(ctx, "mp/failed", body, int64(len(data))); err == nil {
		t.Fatal("put with failing body: no error")
	}
	count := func() int {
		n := 0
		if err := objstore.ListIncompleteUploads(ctx, st, "mp/", func(objstore.IncompleteUpload) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("%d incomplete uploads after a failed put", n)
	}
	// ...but a crash does; simulate one through the test hook.
	if err := st.StartUploadForTest(ctx, "mp/crashed"); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d incomplete uploads, want 1", n)
	}
	if n, err := objstore.AbortIncompleteUploads(ctx, st, "mp/", time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("abort uploads older than an hour: %d, %v; want 0", n, err)
	}
	if n, err := objstore.AbortIncompleteUploads(ctx, st, "mp/", time.Now().Add(time.Minute)); err != nil || n != 1 {
		t.Fatalf("abort uploads: %d, %v; want 1", n, err)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d incomplete uploads after abort", n)
	}
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// A server (or proxy) that answers a ranged GET with fewer bytes than asked
// is caught: with an honest Content-Length as ErrShortRead, and with a body
// cut short of its Content-Length as ErrShortRead too.
func TestShortRangeFromServer(t *testing.T) {
	gw := objstoretest.StartVersityGW(t)
	target, _ := url.Parse(gw.Endpoint)
	mode := "lie"
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.Header.Get("Range") == "" {
			httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		switch mode {
		case "lie": // fewer bytes, consistent Content-Length
			body = body[:len(body)/2]
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(rec.Code)
			w.Write(body)
		case "cut": // full Content-Length, then the connection drops
			w.WriteHeader(rec.Code)
			w.Write(body[:len(body)/2])
			panic(http.ErrAbortHandler)
		}
	}))
	defer proxy.Close()
	st := gw.NewStore(t, s3.Options{})
	objstoretest.MustPut(t, st, "obj", objstoretest.Random(1, 100000))
	opts := gw.Options(st.Bucket())
	opts.Endpoint = proxy.URL
	opts.MaxAttempts = 1
	via, err := s3.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"lie", "cut"} {
		mode = m
		got, err := via.GetRange(context.Background(), "obj", 100, 50000)
		if !errors.Is(err, objstore.ErrShortRead) || got != nil {
			t.Fatalf("%s: got %d bytes, %v; want ErrShortRead", m, len(got), err)
		}
	}
}

// A missing bucket is a configuration error, not ErrNotFound.
func TestMissingBucket(t *testing.T) {
	gw := objstoretest.StartVersityGW(t)
	st, err := s3.New(context.Background(), gw.Options("no-such-bucket"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.GetRange(context.Background(), "k", 0, 1)
	if err == nil || errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("get from missing bucket: %v; want an error that is not ErrNotFound", err)
	}
}

// Throttling and 5xx answers are retried with back-off.
func TestRetriesThrottling(t *testing.T) {
	gw := objstoretest.StartVersityGW(t)
	target, _ := url.Parse(gw.Endpoint)
	var mu sync.Mutex
	failNext := 0
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fail := failNext > 0
		if fail {
			failNext--
		}
		mu.Unlock()
		if fail {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
			return
		}
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	defer proxy.Close()
	st := gw.NewStore(t, s3.Options{})
	opts := gw.Options(st.Bucket())
	opts.Endpoint, opts.MaxAttempts, opts.MaxBackoff = proxy.URL, 4, 10*time.Millisecond
	via, err := s3.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	setFail := func(n int) { mu.Lock(); failNext = n; mu.Unlock() }
	setFail(3)
	objstoretest.MustPut(t, via, "k", []byte("value"))
	setFail(3)
	if got := objstoretest.MustGet(t, via, "k"); string(got) != "value" {
		t.Fatalf("get: %q", got)
	}
	setFail(4)
	if _, err := via.Stat(context.Background(), "k"); err == nil {
		t.Fatal("stat after MaxAttempts failures: no error")
	}
}
