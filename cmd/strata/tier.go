package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-io/strata/ingest/cluster"
	"github.com/strata-io/strata/tier"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore"
)

// tierCmd is `strata tier`: inspection of the object-store side of tiered
// topics.
func tierCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tier",
		Short: "Inspect tiered storage",
	}
	cmd.AddCommand(tierLsCmd())
	return cmd
}

type tierLsOptions struct {
	store      objectStoreFlags
	dataDir    string
	topic      string
	topicID    string
	partitions int32
	partition  int32
	timeout    time.Duration
}

func tierLsCmd() *cobra.Command {
	var o tierLsOptions
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List a tiered topic's remote segments, sizes, compression and upload lag",
		Long: `List what the bucket holds for a topic's partitions: the newest manifest
(leader epoch, sequence), the log start and remote end offsets, every remote
segment (offsets, records, raw and stored bytes, compression ratio raw/stored,
leader epochs as epoch@start-offset, upload time), the objects pending
deletion, and totals. Only manifests are read: one LIST and one GET per
partition.

Bucket keys carry the topic id, not the name, and the bucket does not record
partition counts. Name the topic by --topic-id with --partitions N or
--partition P, or by --topic (or --topic-id) with --data-dir, which looks the
id and the partition count up in <data-dir>/metadata.json. That file is only
read, never created.

With --data-dir, each partition also shows its upload lag: the sealed local
segments above the remote end, and their bytes. The partition log cannot be
opened while the broker runs, so this is an approximation from the segment
file names (which carry base offsets) and sizes under
<data-dir>/logs/<topic>-<partition>.<topic id>/: every .log file but the
newest counts as sealed, including one sealed an instant ago that is not yet
durable or below the high watermark.

The object store flags are those of serve; like serve, every flag can also be
set with an environment variable (STRATA_ plus the flag name in upper case
with '-' as '_'). It writes no objects, metadata or log files.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnvAndFile(cmd.Flags(), ""); err != nil {
				return err
			}
			parent := cmd.Context()
			if parent == nil {
				parent = context.Background()
			}
			ctx, cancel := context.WithTimeout(parent, o.timeout)
			defer cancel()
			return runTierLs(ctx, cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	o.store.register(f, "object store holding the tiered data: fs (a local directory) or s3")
	f.StringVar(&o.dataDir, "data-dir", "", "the broker's data directory: topic ids and partition counts from its metadata.json, upload lag from its logs")
	f.StringVar(&o.topic, "topic", "", "topic name (needs --data-dir)")
	f.StringVar(&o.topicID, "topic-id", "", "topic id, 32 hex digits")
	f.Int32Var(&o.partitions, "partitions", 0, "list partitions 0 … N-1 (default: the topic's partition count from --data-dir)")
	f.Int32Var(&o.partition, "partition", -1, "list only this partition (-1: all of them)")
	f.DurationVar(&o.timeout, "timeout", time.Minute, "give up after this long")
	return cmd
}

// tierLsTarget is what runTierLs lists, resolved from the flags and the
// metadata.
type tierLsTarget struct {
	id         manifest.TopicID
	name       string // "" if unknown
	partitions []int32
	logsDir    string // <data-dir>/logs, "" without --data-dir
}

func resolveTierLsTarget(o tierLsOptions) (tierLsTarget, error) {
	var tg tierLsTarget
	if o.topic == "" && o.topicID == "" {
		return tg, errors.New("name the topic with --topic-id or --topic")
	}
	if o.partition >= 0 && o.partitions > 0 {
		return tg, errors.New("use --partitions or --partition, not both")
	}
	if o.partitions < 0 {
		return tg, fmt.Errorf("--partitions must be positive, got %d", o.partitions)
	}
	if o.topicID != "" {
		id, err := parseTopicIDFlag(o.topicID)
		if err != nil {
			return tg, err
		}
		tg.id = id
	}
	var count int32
	if o.dataDir != "" {
		tg.logsDir = filepath.Join(o.dataDir, "logs")
		t, found, err := lookupTopic(o.dataDir, o.topic, tg.id)
		if err != nil {
			return tg, err
		}
		if found {
			if o.topicID != "" && t.ID != cluster.TopicID(tg.id) {
				return tg, fmt.Errorf("topic %q has id %s in %s, not %s", t.Name, t.ID, o.dataDir, o.topicID)
			}
			tg.id, tg.name, count = manifest.TopicID(t.ID), t.Name, int32(len(t.Partitions))
		}
	} else if o.topic != "" {
		return tg, errors.New("--topic needs --data-dir to look up the topic id; or give --topic-id")
	}
	if o.partitions > 0 {
		count = o.partitions
	}
	switch {
	case o.partition >= 0:
		tg.partitions = []int32{o.partition}
	case count > 0:
		for p := range count {
			tg.partitions = append(tg.partitions, p)
		}
	default:
		return tg, errors.New("the partition count is unknown: give --partitions N or --partition P (or --data-dir with the topic in its metadata)")
	}
	return tg, nil
}

// parseTopicIDFlag parses 32 hex digits, dashes (UUID form) allowed.
func parseTopicIDFlag(s string) (manifest.TopicID, error) {
	var id manifest.TopicID
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("--topic-id %q is not 32 hex digits", s)
	}
	copy(id[:], b)
	return id, nil
}

// lookupTopic finds the topic by name (if name is set) or else by id in
// the broker's metadata file. It only reads: cluster.OpenLocal would create
// a missing file, so it is called only when the file exists.
func lookupTopic(dataDir, name string, id manifest.TopicID) (cluster.Topic, bool, error) {
	path := filepath.Join(dataDir, "metadata.json")
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) && name == "" {
			return cluster.Topic{}, false, nil // the lag needs only the id
		}
		return cluster.Topic{}, false, fmt.Errorf("topic metadata: %w (is --data-dir the broker's data directory?)", err)
	}
	meta, err := cluster.OpenLocal(dataDir, cluster.Broker{})
	if err != nil {
		return cluster.Topic{}, false, err
	}
	defer meta.Close()
	if name != "" {
		t, ok := meta.Topic(name)
		if !ok {
			return cluster.Topic{}, false, fmt.Errorf("no topic %q in %s", name, path)
		}
		return t, true, nil
	}
	t, ok := meta.TopicByID(cluster.TopicID(id))
	return t, ok, nil
}

// openStoreForInspection opens the object store without side effects on a
// bucket that is not there: an fs store's directory must exist.
func openStoreForInspection(ctx context.Context, o tierLsOptions) (objstore.Store, error) {
	st, err := o.store.open(ctx, o.dataDir, true)
	if errors.Is(err, errNoObjectStore) {
		return nil, fmt.Errorf("%w: there is no bucket to list", err)
	}
	return st, err
}

// tierTotals adds up partitions.
type tierTotals struct {
	partitions, withData int
	segments             int
	records, raw, stored int64
	deleted              int
	deletedBytes         int64
	lagKnown             bool
	lagSegments          int
	lagBytes             int64
}

func runTierLs(ctx context.Context, w io.Writer, o tierLsOptions) error {
	tg, err := resolveTierLsTarget(o)
	if err != nil {
		return err
	}
	store, err := openStoreForInspection(ctx, o)
	if err != nil {
		return err
	}
	defer store.Close()
	client := tier.ManifestClient(store)

	name := tg.name
	if name == "" {
		name = "(name unknown)"
	}
	fmt.Fprintf(w, "topic %s  id %s  store %s\n", name, tg.id, storeName(store))
	var tot tierTotals
	for _, p := range tg.partitions {
		if err := lsPartition(ctx, w, client, tg, p, &tot); err != nil {
			return err
		}
	}
	if len(tg.partitions) > 1 {
		fmt.Fprintf(w, "\ntotal: %d partitions (%d with remote data), %d segments, %d records\n", tot.partitions, tot.withData, tot.segments, tot.records)
		fmt.Fprintf(w, "  raw %s  stored %s  ratio %s\n", sizeString(tot.raw), sizeString(tot.stored), ratio(tot.raw, tot.stored))
		fmt.Fprintf(w, "  pending deletion: %d objects, %s\n", tot.deleted, sizeString(tot.deletedBytes))
		if tot.lagKnown {
			fmt.Fprintf(w, "  upload lag: ~%d sealed segments, %s\n", tot.lagSegments, sizeString(tot.lagBytes))
		}
	}
	return nil
}

func storeName(s objstore.Store) string {
	if st, ok := s.(fmt.Stringer); ok {
		return st.String()
	}
	return fmt.Sprintf("%T", s)
}

func lsPartition(ctx context.Context, w io.Writer, client *manifest.Client, tg tierLsTarget, p int32, tot *tierTotals) error {
	tot.partitions++
	fmt.Fprintf(w, "\npartition %d\n", p)
	m, key, err := client.Load(ctx, tg.id, p)
	var remoteEnd int64
	switch {
	case errors.Is(err, manifest.ErrNoManifest):
		fmt.Fprintf(w, "  no remote data (no manifest under %s)\n", manifest.ManifestPrefix(tg.id, p))
	case err != nil:
		return fmt.Errorf("partition %d: %w", p, err)
	default:
		tot.withData++
		remoteEnd = m.EndOffset()
		printManifest(w, m, key, tot)
	}
	if tg.logsDir != "" {
		printLag(w, tg, p, remoteEnd, m != nil, tot)
	}
	return nil
}

func printManifest(w io.Writer, m *manifest.Manifest, key string, tot *tierTotals) {
	var records, raw, stored int64
	for _, e := range m.Entries {
		records += e.RecordCount
		raw += e.RawSize
		stored += e.StoredSize
	}
	fmt.Fprintf(w, "  manifest %s  written %s  %s\n", m.ID(), msTime(m.CreatedMs), key)
	fmt.Fprintf(w, "  log start %d  remote end %d  segments %d  records %d  raw %s  stored %s  ratio %s\n",
		m.LogStartOffset, m.EndOffset(), len(m.Entries), records, sizeString(raw), sizeString(stored), ratio(raw, stored))
	tot.segments += len(m.Entries)
	tot.records += records
	tot.raw += raw
	tot.stored += stored
	if len(m.Entries) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  BASE\tNEXT\tRECORDS\tRAW\tSTORED\tRATIO\tEPOCHS\tUPLOADED\tKEY")
		for _, e := range m.Entries {
			fmt.Fprintf(tw, "  %d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", e.BaseOffset, e.NextOffset, e.RecordCount,
				e.RawSize, e.StoredSize, ratio(e.RawSize, e.StoredSize), epochList(e.Epochs), msTime(e.CreatedMs), e.Key)
		}
		tw.Flush()
	}
	if len(m.Deleted) == 0 {
		fmt.Fprintln(w, "  pending deletion: none")
		return
	}
	var bytes int64
	for _, d := range m.Deleted {
		bytes += d.Size
	}
	tot.deleted += len(m.Deleted)
	tot.deletedBytes += bytes
	fmt.Fprintf(w, "  pending deletion: %d objects, %s (deleted by the leader's garbage collection once the grace period has passed)\n", len(m.Deleted), sizeString(bytes))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    REMOVED\tSIZE\tKEY")
	for _, d := range m.Deleted {
		fmt.Fprintf(tw, "    %s\t%d\t%s\n", msTime(d.RemovedMs), d.Size, d.Key)
	}
	tw.Flush()
}

// localSegment is a segment file found in a partition directory.
type localSegment struct {
	base, size int64
}

// localSegmentHeader is the size of a local segment file's header (see
// docs/local-log.md); the rest of the file is record batches.
const localSegmentHeader = 16

// partitionDir finds a partition's log directory: <topic>-<p>.<id>.
func partitionDir(tg tierLsTarget, p int32) (string, error) {
	if tg.name != "" {
		return filepath.Join(tg.logsDir, fmt.Sprintf("%s-%d.%s", tg.name, p, tg.id)), nil
	}
	// Topic names have no glob metacharacters, nor do ids and numbers.
	matches, err := filepath.Glob(filepath.Join(tg.logsDir, fmt.Sprintf("*-%d.%s", p, tg.id)))
	if err != nil {
		return "", err
	}
	if len(matches) != 1 {
		return "", fmt.Errorf("%d directories match *-%d.%s in %s", len(matches), p, tg.id, tg.logsDir)
	}
	return matches[0], nil
}

// localSegments lists the segment files of a partition directory by base
// offset.
func localSegments(dir string) ([]localSegment, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []localSegment
	for _, de := range entries {
		name, ok := strings.CutSuffix(de.Name(), ".log")
		if !ok || len(name) != 20 || !de.Type().IsRegular() {
			continue
		}
		base, err := strconv.ParseInt(name, 10, 64)
		if err != nil || base < 0 {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		segs = append(segs, localSegment{base: base, size: max(info.Size()-localSegmentHeader, 0)})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].base < segs[j].base })
	return segs, nil
}

func printLag(w io.Writer, tg tierLsTarget, p int32, remoteEnd int64, hasManifest bool, tot *tierTotals) {
	dir, err := partitionDir(tg, p)
	if err != nil {
		fmt.Fprintf(w, "  upload lag: unknown (%v)\n", err)
		return
	}
	segs, err := localSegments(dir)
	if err != nil {
		fmt.Fprintf(w, "  upload lag: unknown (%v)\n", err)
		return
	}
	n, bytes := 0, int64(0)
	for i := 0; i+1 < len(segs); i++ { // the newest file is the active segment
		if segs[i+1].base > remoteEnd {
			n++
			bytes += segs[i].size
		}
	}
	tot.lagKnown = true
	tot.lagSegments += n
	tot.lagBytes += bytes
	local := "none"
	if len(segs) > 0 {
		local = fmt.Sprintf("from %d, %d segment files", segs[0].base, len(segs))
	}
	fmt.Fprintf(w, "  upload lag: ~%d sealed segments above the remote end, %s (approximate, from %s; local: %s)\n",
		n, sizeString(bytes), dir, local)
	if !hasManifest && n > 0 {
		fmt.Fprintln(w, "  (no manifest: nothing uploaded yet, or the topic is not tiered)")
	}
}

func epochList(es []manifest.EpochStart) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = fmt.Sprintf("%d@%d", e.Epoch, e.StartOffset)
	}
	return strings.Join(parts, ",")
}

func msTime(ms int64) string {
	if ms <= 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

func ratio(raw, stored int64) string {
	if stored <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(raw)/float64(stored))
}

// sizeString prints a byte count exactly, with a binary-unit hint.
func sizeString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, u := float64(n), ""
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v /= unit
		u = s
		if v < unit {
			break
		}
	}
	return fmt.Sprintf("%d B (%.1f %s)", n, v, u)
}
