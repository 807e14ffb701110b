package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func TestClassify(t *testing.T) {
	seg := "/b/74cb/t/4f2a91073c1d4e8b9a10223344556677/7/seg/00000000000000001234-0000000003-0123456789abcdef.seg"
	mf := "/b/74cb/t/4f2a91073c1d4e8b9a10223344556677/7/manifest/0000000003-00000000000000000042.mf"
	for _, c := range []struct {
		method, target string
		rng            bool
		class          reqClass
		kind           string
	}{
		{"GET", seg, true, reqGetRange, keyKindSegment},
		{"GET", seg, false, reqGet, keyKindSegment},
		{"GET", mf, false, reqGet, keyKindManifest},
		{"HEAD", seg, false, reqHead, keyKindSegment},
		{"PUT", seg, false, reqPut, keyKindSegment},
		{"PUT", seg + "?partNumber=2&uploadId=abc", false, reqPutPart, keyKindSegment},
		{"POST", seg + "?uploads", false, reqMPUCreate, keyKindSegment},
		{"POST", seg + "?uploadId=abc", false, reqMPUComplete, keyKindSegment},
		{"DELETE", seg + "?uploadId=abc", false, reqDelete, keyKindSegment},
		{"DELETE", mf, false, reqDelete, keyKindManifest},
		{"POST", "/b?delete", false, reqDelete, keyKindOther},
		{"GET", "/b?list-type=2&prefix=74cb%2Ft%2F", false, reqList, keyKindOther},
		{"GET", "/b?uploads&prefix=x", false, reqList, keyKindOther},
		{"GET", "/b/", false, reqList, keyKindOther},
		{"PUT", "/b/_strata/probe/x", false, reqPut, keyKindProbe},
		{"PUT", "/b", false, reqPut, keyKindOther}, // CreateBucket
	} {
		r := httptest.NewRequest(c.method, c.target, nil)
		if c.rng {
			r.Header.Set("Range", "bytes=0-9")
		}
		cl, kind := classify(r)
		if cl != c.class || kind != c.kind {
			t.Errorf("%s %s (range %v) = %q, %q; want %q, %q", c.method, c.target, c.rng, cl, kind, c.class, c.kind)
		}
	}
}

func TestReqCounts(t *testing.T) {
	a := reqCounts{reqPut: {keyKindSegment: {calls: 3, bytesIn: 30}}, reqGetRange: {keyKindSegment: {calls: 5}, keyKindManifest: {calls: 1}}}
	b := reqCounts{reqPut: {keyKindSegment: {calls: 1, bytesIn: 10}}, reqGetRange: {keyKindSegment: {calls: 5}}}
	d := a.sub(b)
	if got := d.calls(putClasses); got != 2 {
		t.Errorf("PUT-class calls = %d, want 2", got)
	}
	if got := d.calls(getClasses, keyKindSegment); got != 0 {
		t.Errorf("segment GETs = %d, want 0", got)
	}
	if got := d.total(); got != 3 {
		t.Errorf("total = %d, want 3", got)
	}
	if got := d.String(); got != "GET range manifest 1, PUT seg 2" {
		t.Errorf("String = %q", got)
	}
	if got := (reqCounts{}).String(); got != "none" {
		t.Errorf("empty String = %q", got)
	}
}

// TestCountingProxy checks that the proxy forwards requests with the Host
// header the client used (SigV4 signs it) and counts them with their bytes.
func TestCountingProxy(t *testing.T) {
	var gotHost string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost = r.Host
		body, _ := io.ReadAll(r.Body)
		switch r.Method {
		case http.MethodPut:
			w.WriteHeader(http.StatusOK)
		case http.MethodGet:
			if strings.HasSuffix(r.URL.Path, "/missing") {
				http.Error(w, "no such key", http.StatusNotFound)
				return
			}
			w.Write(bytes.Repeat([]byte("x"), 1000))
		}
		_ = body
	}))
	defer backend.Close()
	px, err := startProxy(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer px.close()
	before := px.snapshot()
	do := func(method, path string, body []byte) {
		req, _ := http.NewRequest(method, "http://"+px.host+path, bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do("PUT", "/b/k/seg/1.seg", make([]byte, 500))
	do("GET", "/b/k/seg/1.seg", nil)
	do("GET", "/b/k/seg/missing", nil)
	if gotHost != px.host {
		t.Errorf("backend saw Host %q, want the proxy's %q", gotHost, px.host)
	}
	d := px.snapshot().sub(before)
	put, get := d[reqPut][keyKindSegment], d[reqGet][keyKindSegment]
	if put.calls != 1 || put.bytesIn != 500 {
		t.Errorf("PUT = %+v", put)
	}
	if get.calls != 2 || get.errors != 1 || get.bytesOut < 1000 {
		t.Errorf("GET = %+v", get)
	}
}

func TestPickOtherChunk(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		if c := pickOtherChunk(r, 10, 4); c >= 3 && c <= 5 {
			t.Fatalf("picked %d, within one of 4", c)
		}
	}
	if c := pickOtherChunk(r, 2, 0); c != 1 {
		t.Errorf("two chunks: picked %d", c)
	}
	if c := pickOtherChunk(r, 1, 0); c != -1 {
		t.Errorf("one chunk: picked %d", c)
	}
}

func TestCheckFirstBatch(t *testing.T) {
	b := make([]byte, 61)
	binary.BigEndian.PutUint64(b[0:8], 100)
	binary.BigEndian.PutUint32(b[23:27], 9) // last offset delta: offsets 100..109
	for off, ok := range map[int64]bool{99: false, 100: true, 109: true, 110: false} {
		if err := checkFirstBatch(b, off); (err == nil) != ok {
			t.Errorf("offset %d: %v", off, err)
		}
	}
	if err := checkFirstBatch(b[:20], 100); err == nil {
		t.Error("no error for a partial batch")
	}
}

func TestTierData(t *testing.T) {
	enc, _ := zstd.NewWriter(nil)
	defer enc.Close()
	for _, kind := range tierDataKinds {
		gen := kind.newGen(kind.seed())
		var all []byte
		for range 2000 {
			v := gen()
			if kind.name == "json" && !json.Valid(v) {
				t.Fatalf("invalid JSON: %s", v)
			}
			if kind.name == "zstd" && len(v) != 1024 {
				t.Fatalf("hex value of %d bytes", len(v))
			}
			all = append(all, v...)
		}
		ratio := float64(len(enc.EncodeAll(all, nil))) / float64(len(all))
		t.Logf("%s: %d bytes, zstd ratio %.3f", kind.name, len(all), ratio)
		if kind.name == "json" && (ratio > 0.35 || ratio < 0.05) {
			t.Errorf("json ratio %.3f: not like text", ratio)
		}
		if kind.name == "zstd" && (ratio < 0.45 || ratio > 0.65) {
			t.Errorf("hex ratio %.3f, want about 0.5", ratio)
		}
		if a, b := kind.newGen(kind.seed())(), gen(); bytes.Equal(a, b) {
			t.Errorf("%s: generator repeats its first value", kind.name)
		}
	}
}

func TestParseTierFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-all", "-strata", "/bin/true"})
	if err != nil || !cfg.tier {
		t.Fatalf("-all: tier %v, %v", cfg.tier, err)
	}
	if _, err := parseFlags([]string{"-tier", "-strata", ""}); err == nil {
		t.Error("-tier without a broker binary accepted")
	}
	if _, err := parseFlags([]string{"-tier", "-strata", "/bin/true", "-tier-mb", "0"}); err == nil {
		t.Error("-tier-mb 0 accepted")
	}
	cfg, err = parseFlags([]string{"-tier", "-strata", "/bin/true", "-tier-fetch-partition-bytes", "8388608"})
	if err != nil || cfg.tierFetchPartBytes != 8<<20 {
		t.Errorf("-tier-fetch-partition-bytes: %d, %v", cfg.tierFetchPartBytes, err)
	}
}

// TestTierPhase runs a small tier phase against the real broker and
// versitygw when both are available ($STRATA_BIN; versitygw as the tool
// finds it).
func TestTierPhase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts versitygw and the broker")
	}
	bin := os.Getenv("STRATA_BIN")
	if bin == "" {
		t.Skip("STRATA_BIN not set")
	}
	if _, err := findVersityGW(""); err != nil {
		t.Skip(err)
	}
	cfg := config{tier: true, tierMB: 24, tierPartitions: 1, tierSegmentBytes: 8 << 20, tierColdReads: 2,
		tierParallel: 2, tierShapeLatency: 5 * time.Millisecond, tierShapeMBps: 100, strataBin: bin}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res := runTier(ctx, cfg, t.TempDir())
	rep := &report{cfg: cfg, tier: &res}
	md := rep.markdown()
	if err := rep.err(); err != nil {
		t.Fatalf("%v\n%s", err, md)
	}
	if len(res.uploads) != 4 || len(res.reads) != 2 || res.cold == nil || len(res.cold.reads) != 4 {
		t.Fatalf("incomplete result:\n%s", md)
	}
	for _, u := range res.uploads {
		if u.inv.stored <= 0 || len(u.inv.segs) < 2 || u.reqs.calls(putClasses) == 0 {
			t.Errorf("%s: %d segments, %d stored bytes, requests %s", u.topic, len(u.inv.segs), u.inv.stored, u.reqs)
		}
	}
	for _, rd := range res.cold.reads {
		if n := rd.reqs.calls(getClasses, keyKindSegment); n < 1 {
			t.Errorf("cold read %s@%d took %d segment GETs", rd.topic, rd.offset, n)
		}
	}
	if res.shaped == nil || len(res.shaped.rows) != 2 {
		t.Fatalf("no S3-like replay:\n%s", md)
	}
	for _, r := range res.shaped.rows {
		// The proxy paces each response: one GET at a time cannot beat
		// the shaped bandwidth (an upper bound, so no timing flake).
		if g := r.gets[0]; g.mbps() > 1.1*cfg.tierShapeMBps {
			t.Errorf("%s: sequential GETs through the shaped proxy at %.0f MB/s, above the %.0f MB/s cap", r.topic, g.mbps(), cfg.tierShapeMBps)
		}
		if r.replay == nil || r.replay.st.records == 0 {
			t.Errorf("%s: no S3-like replay", r.topic)
		}
	}
	for _, want := range []string{"#### Upload", "**replay, kgo consumer from offset 0**", "#### Cold random reads", "#### Object-store requests", "#### Replay against an S3-like store"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
