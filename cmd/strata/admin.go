package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/strata-io/strata/compactor"
	"github.com/strata-io/strata/ingest/broker"
	"github.com/strata-io/strata/ingest/topicconfig"
)

// The admin HTTP API (serve --admin-addr). It has no authentication: keep
// it on loopback or a private network.
//
//	GET /v1/topics/{topic}/retention-plan?set=key=value&set=…[&format=text]
//	    the retention and compaction dry run of a topic with its current
//	    configs, or with proposed ones (set, repeated, Kafka config names):
//	    JSON by default (retentionPlanJSON), the text `strata retention
//	    plan` prints with format=text. 404 for an unknown topic, 400 for a
//	    malformed request or an invalid config ({"error": …, "config": …}).
//	GET /debug/pprof/…
//	    Go's profiling handlers.

// retentionPlanner answers retention dry runs; *broker.Broker is one.
type retentionPlanner interface {
	RetentionPlan(topic string, set map[string]string, now time.Time) (broker.TopicPlan, error)
}

// serveAdmin serves the admin API on addr until the returned function is
// called.
func serveAdmin(addr string, planner retentionPlanner, logger *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	srv := &http.Server{Handler: adminHandler(planner, logger), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("admin server stopped", "err", err)
		}
	}()
	logger.Info("admin API listening", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// adminHandler routes the admin API.
func adminHandler(planner retentionPlanner, logger *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/topics/{topic}/retention-plan", func(w http.ResponseWriter, r *http.Request) {
		serveRetentionPlan(w, r, planner, logger)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func serveRetentionPlan(w http.ResponseWriter, r *http.Request, planner retentionPlanner, logger *slog.Logger) {
	q := r.URL.Query()
	text := false
	switch f := q.Get("format"); f {
	case "", "json":
	case "text":
		text = true
	default:
		writeAdminError(w, text, http.StatusBadRequest, fmt.Sprintf("format must be json or text, got %q", f), "")
		return
	}
	set, err := parseSets(q["set"])
	if err != nil {
		writeAdminError(w, text, http.StatusBadRequest, err.Error(), "")
		return
	}
	topic := r.PathValue("topic")
	plan, err := planner.RetentionPlan(topic, set, time.Now())
	var cerr *topicconfig.Error
	switch {
	case errors.Is(err, broker.ErrUnknownTopicOrPartition):
		writeAdminError(w, text, http.StatusNotFound, fmt.Sprintf("unknown topic %q", topic), "")
		return
	case errors.As(err, &cerr):
		writeAdminError(w, text, http.StatusBadRequest, cerr.Error(), cerr.Name)
		return
	case err != nil:
		logger.Warn("retention plan", "topic", topic, "err", err)
		writeAdminError(w, text, http.StatusInternalServerError, err.Error(), "")
		return
	}
	if text {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, plan.String())
		return
	}
	writeJSON(w, http.StatusOK, retentionPlanToJSON(plan))
}

// parseSets parses set parameters of the form key=value. A key given twice
// is refused, whatever the values.
func parseSets(sets []string) (map[string]string, error) {
	out := make(map[string]string, len(sets))
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("set %q: want key=value", s)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("set %s given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

// adminError is the body of an admin API error in JSON. Config names the
// topic config at fault, for invalid configs.
type adminError struct {
	Error  string `json:"error"`
	Config string `json:"config,omitempty"`
}

func writeAdminError(w http.ResponseWriter, text bool, status int, msg, config string) {
	if text {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintln(w, msg)
		return
	}
	writeJSON(w, status, adminError{Error: msg, Config: config})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to tell it
}

// The JSON form of broker.TopicPlan: the API other tools (the Terraform
// provider) read. Offsets are [base_offset, next_offset); bytes count
// record batches (raw, before chunk compression, for remote objects),
// object_bytes the object's size in the bucket.
type retentionPlanJSON struct {
	Topic      string              `json:"topic"`
	PlannedAt  time.Time           `json:"planned_at"`
	Set        map[string]string   `json:"set"`
	Configs    map[string]string   `json:"configs"`
	Partitions []partitionPlanJSON `json:"partitions"`
}

type partitionPlanJSON struct {
	Partition  int32          `json:"partition"`
	Retention  retentionJSON  `json:"retention"`
	Compaction compactionJSON `json:"compaction"`
	// RemoteCompaction is the compaction of the bucket's history, for a
	// tiered partition of a compacted topic.
	RemoteCompaction *compactionJSON `json:"remote_compaction,omitempty"`
}

type retentionJSON struct {
	CleanupPolicy  string `json:"cleanup_policy"`
	Tiered         bool   `json:"tiered"`
	LogStartBefore int64  `json:"log_start_before"`
	LogStartAfter  int64  `json:"log_start_after"`
	// PublishManifest is set when a new manifest is published (tiered).
	PublishManifest bool `json:"publish_manifest"`
	// Remote are the objects that leave the manifest (deleted from the
	// bucket after the grace period); Local the local segments deleted.
	Remote []segmentJSON `json:"remote"`
	Local  []segmentJSON `json:"local"`
}

type segmentJSON struct {
	// Name is the object key of a remote segment, the file name of a
	// local one.
	Name         string `json:"name"`
	BaseOffset   int64  `json:"base_offset"`
	NextOffset   int64  `json:"next_offset"`
	Bytes        int64  `json:"bytes"`
	ObjectBytes  int64  `json:"object_bytes,omitempty"`
	MaxTimestamp int64  `json:"max_timestamp"`
	Reason       string `json:"reason,omitempty"`
}

type compactionJSON struct {
	Tier          string `json:"tier"`
	CleanupPolicy string `json:"cleanup_policy"`
	Clean         bool   `json:"clean"`
	Forced        bool   `json:"forced"`
	Reason        string `json:"reason"`
	// [From, To) is the cleanable range, [From, DirtyFrom) its clean part.
	From             int64       `json:"from"`
	DirtyFrom        int64       `json:"dirty_from"`
	To               int64       `json:"to"`
	FirstUncleanable int64       `json:"first_uncleanable"`
	CleanBytes       int64       `json:"clean_bytes"`
	DirtyBytes       int64       `json:"dirty_bytes"`
	DirtyRatio       float64     `json:"dirty_ratio"`
	MinDirtyRatio    float64     `json:"min_cleanable_dirty_ratio"`
	DeleteHorizonMs  int64       `json:"delete_horizon_ms"`
	Groups           []groupJSON `json:"groups"`
}

// groupJSON is one output segment of a compaction and the segments it is
// made of.
type groupJSON struct {
	BaseOffset int64         `json:"base_offset"`
	NextOffset int64         `json:"next_offset"`
	Bytes      int64         `json:"bytes"`
	Segments   []segmentJSON `json:"segments"`
}

func retentionPlanToJSON(p broker.TopicPlan) retentionPlanJSON {
	out := retentionPlanJSON{Topic: p.Topic, PlannedAt: p.Now.UTC(), Set: p.Set, Configs: p.Configs,
		Partitions: make([]partitionPlanJSON, 0, len(p.Partitions))}
	for _, pp := range p.Partitions {
		r, c := pp.Retention, pp.Compaction
		rj := retentionJSON{
			CleanupPolicy: r.Policy.String(), Tiered: r.Tiered,
			LogStartBefore: r.OldLogStart, LogStartAfter: r.LogStart, PublishManifest: r.Publish,
			Remote: deletionsJSON(r.Remote), Local: deletionsJSON(r.Local),
		}
		cj := compactionToJSON(c)
		var rcj *compactionJSON
		if pp.RemoteCompaction != nil {
			j := compactionToJSON(*pp.RemoteCompaction)
			rcj = &j
		}
		out.Partitions = append(out.Partitions, partitionPlanJSON{Partition: pp.Partition, Retention: rj, Compaction: cj, RemoteCompaction: rcj})
	}
	return out
}

func compactionToJSON(c compactor.CompactionPlan) compactionJSON {
	cj := compactionJSON{
		Tier: c.Tier.String(), CleanupPolicy: c.Policy.String(), Clean: c.Clean, Forced: c.Forced, Reason: string(c.Reason),
		From: c.From, DirtyFrom: c.DirtyFrom, To: c.To, FirstUncleanable: c.FirstUncleanable,
		CleanBytes: c.CleanBytes, DirtyBytes: c.DirtyBytes, DirtyRatio: c.DirtyRatio, MinDirtyRatio: c.MinDirtyRatio,
		DeleteHorizonMs: c.DeleteHorizonMs, Groups: []groupJSON{},
	}
	for _, g := range c.Groups {
		gj := groupJSON{BaseOffset: g.Base, NextOffset: g.Next, Bytes: g.Bytes, Segments: make([]segmentJSON, len(g.Segments))}
		for i, s := range g.Segments {
			gj.Segments[i] = segmentToJSON(s, "")
		}
		cj.Groups = append(cj.Groups, gj)
	}
	return cj
}

func deletionsJSON(dels []compactor.Deletion) []segmentJSON {
	out := make([]segmentJSON, len(dels))
	for i, d := range dels {
		out[i] = segmentToJSON(d.Segment, string(d.Reason))
	}
	return out
}

func segmentToJSON(s compactor.Segment, reason string) segmentJSON {
	return segmentJSON{Name: s.Name(), BaseOffset: s.Base, NextOffset: s.Next, Bytes: s.Bytes, ObjectBytes: s.ObjectBytes,
		MaxTimestamp: s.MaxTimestamp, Reason: reason}
}
