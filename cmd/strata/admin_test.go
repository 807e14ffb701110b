package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/broker"
)

// planFixture is a broker (no tier, background passes off) with a topic
// "events" of two partitions: partition 0 holds old records in sealed
// segments and a few new ones; and the admin API over it.
type planFixture struct {
	b   *broker.Broker
	srv *httptest.Server
}

func newPlanFixture(t *testing.T) *planFixture {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := broker.Open(broker.Config{
		DataDir: t.TempDir(), MinFreeBytes: 1 << 20, Logger: quiet,
		RetentionCheckInterval: time.Hour, CleanerBackoff: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.CreateTopic("events", 2, 1, map[string]string{"segment.bytes": "1024"}, false); err != nil {
		t.Fatal(err)
	}
	p, err := b.Partition("events", 0)
	if err != nil {
		t.Fatal(err)
	}
	old, now := time.Now().Add(-2*time.Hour).UnixMilli(), time.Now().UnixMilli()
	for i := range 24 {
		ts := old
		if i >= 18 {
			ts = now
		}
		rec := batch.Record{Key: []byte{byte(i)}, Value: make([]byte, 300)}
		if _, err := p.Produce(batch.Build(batch.BuildOptions{BaseTimestamp: ts}, rec), true); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitDurable(ctx, p.LogEndOffset()-1); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(adminHandler(b, quiet))
	t.Cleanup(srv.Close)
	return &planFixture{b: b, srv: srv}
}

func (fx *planFixture) get(t *testing.T, path string) (int, string, []byte) {
	t.Helper()
	resp, err := http.Get(fx.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

// TestAdminRetentionPlan: the JSON answer carries the planned deletions
// with offsets, names, bytes and reasons; format=text is the plan's text;
// the dry run deletes nothing.
func TestAdminRetentionPlan(t *testing.T) {
	fx := newPlanFixture(t)
	status, ctype, body := fx.get(t, "/v1/topics/events/retention-plan?set="+url.QueryEscape("retention.ms=3600000"))
	if status != http.StatusOK || ctype != "application/json" {
		t.Fatalf("status %d %s: %s", status, ctype, body)
	}
	var got retentionPlanJSON
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Topic != "events" || got.Set["retention.ms"] != "3600000" || got.Configs["segment.bytes"] != "1024" || len(got.Partitions) != 2 {
		t.Fatalf("plan: %+v", got)
	}
	r := got.Partitions[0].Retention
	if r.Tiered || r.CleanupPolicy != "delete" || len(r.Local) == 0 || r.LogStartBefore != 0 || r.LogStartAfter != r.Local[len(r.Local)-1].NextOffset {
		t.Fatalf("retention: %+v", r)
	}
	next := int64(0)
	for _, s := range r.Local {
		if s.BaseOffset != next || s.NextOffset <= s.BaseOffset || s.Bytes <= 0 || s.Reason != "retention.ms" || !strings.HasSuffix(s.Name, ".log") {
			t.Fatalf("deletion %+v", s)
		}
		next = s.NextOffset
	}
	if c := got.Partitions[0].Compaction; c.Tier != "local" || c.Clean || c.Reason != "cleanup.policy does not compact" || c.Groups == nil {
		t.Fatalf("compaction: %+v", c)
	}
	p, _ := fx.b.Partition("events", 0)
	if p.LogStartOffset() != 0 {
		t.Fatalf("the dry run moved the log start to %d", p.LogStartOffset())
	}

	status, ctype, body = fx.get(t, "/v1/topics/events/retention-plan?format=text&set=retention.ms%3D3600000")
	want, err := fx.b.RetentionPlan("events", map[string]string{"retention.ms": "3600000"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Both plans name the same deletions; only the header's clock differs.
	if status != http.StatusOK || !strings.HasPrefix(ctype, "text/plain") || dropFirstLine(string(body)) != dropFirstLine(want.String()) {
		t.Fatalf("text: status %d %s:\n%s\nwant:\n%s", status, ctype, body, want)
	}
}

func dropFirstLine(s string) string {
	_, rest, _ := strings.Cut(s, "\n")
	return rest
}

// TestAdminErrors: an unknown topic is 404, a malformed request or an
// invalid config 400 naming the config; other methods and paths are
// refused; the pprof handlers are served beside the API.
func TestAdminErrors(t *testing.T) {
	fx := newPlanFixture(t)
	for _, tc := range []struct {
		path   string
		status int
		msg    string
		config string
	}{
		{"/v1/topics/nope/retention-plan", 404, `unknown topic "nope"`, ""},
		{"/v1/topics/events/retention-plan?set=retention.ms%3Dsoon", 400, `invalid value "soon" for configuration retention.ms`, "retention.ms"},
		{"/v1/topics/events/retention-plan?set=retention.mss%3D1", 400, "unknown topic configuration", "retention.mss"},
		{"/v1/topics/events/retention-plan?set=retention.ms", 400, `set "retention.ms": want key=value`, ""},
		{"/v1/topics/events/retention-plan?set=retention.ms%3D1&set=retention.ms%3D2", 400, "set retention.ms given twice", ""},
		{"/v1/topics/events/retention-plan?format=yaml", 400, "format must be json or text", ""},
	} {
		status, ctype, body := fx.get(t, tc.path)
		var e adminError
		if err := json.Unmarshal(body, &e); err != nil || status != tc.status || ctype != "application/json" || !strings.Contains(e.Error, tc.msg) || e.Config != tc.config {
			t.Fatalf("%s: status %d %s: %s (%v)", tc.path, status, ctype, body, err)
		}
	}
	status, ctype, body := fx.get(t, "/v1/topics/nope/retention-plan?format=text")
	if status != 404 || !strings.HasPrefix(ctype, "text/plain") || string(body) != "unknown topic \"nope\"\n" {
		t.Fatalf("text error: %d %s %q", status, ctype, body)
	}
	resp, err := http.Post(fx.srv.URL+"/v1/topics/events/retention-plan", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	if status, _, _ := fx.get(t, "/v1/topics/events"); status != 404 {
		t.Fatalf("unknown path: %d", status)
	}
	if status, _, body := fx.get(t, "/debug/pprof/"); status != 200 || !strings.Contains(string(body), "goroutine") {
		t.Fatalf("pprof index: %d", status)
	}
}
