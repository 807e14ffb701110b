package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	miniocreds "github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/objstoretest"
	"github.com/strata-io/strata/tier/objstore/s3"
)

// manifestStore adapts an objstore.Store to tier/manifest's Store, so the
// tests read manifests with their own client, independent of the broker.
type manifestStore struct{ s objstore.Store }

func (a manifestStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	return a.s.PutIfAbsent(ctx, key, r, size)
}

func (a manifestStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return a.s.Get(ctx, key)
}

func (a manifestStore) Stat(ctx context.Context, key string) (int64, error) {
	info, err := a.s.Stat(ctx, key)
	return info.Size, err
}

func (a manifestStore) List(ctx context.Context, prefix string, fn func(string) error) error {
	return a.s.List(ctx, prefix, func(o objstore.ObjectInfo) error { return fn(o.Key) })
}

func manifestClient(s objstore.Store) *manifest.Client {
	return manifest.NewClient(manifestStore{s}, manifest.Options{
		IsExists:   func(err error) bool { return errors.Is(err, objstore.ErrExists) },
		IsNotFound: func(err error) bool { return errors.Is(err, objstore.ErrNotFound) },
	})
}

// listOffsetRaw sends one ListOffsets request at the given version for
// partition 0 of topic and returns the offset (failing on an error code).
func listOffsetRaw(t testing.TB, addr, topic string, version int16, ts int64) int64 {
	t.Helper()
	off, err := tryListOffset(t, addr, topic, version, ts)
	if err != nil {
		t.Fatal(err)
	}
	return off
}

// tryListOffset is listOffsetRaw returning the error.
func tryListOffset(t testing.TB, addr, topic string, version int16, ts int64) (int64, error) {
	rc := dialRaw(t, addr)
	defer rc.c.Close()
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = version
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = 0, ts, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	rc.send(req)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	resp.Version = version
	if err := rc.recv(resp); err != nil {
		return 0, fmt.Errorf("ListOffsets v%d ts %d: %w", version, ts, err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return 0, fmt.Errorf("ListOffsets v%d ts %d: malformed response %+v", version, ts, resp)
	}
	p := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		return 0, fmt.Errorf("ListOffsets v%d ts %d: %w", version, ts, err)
	}
	return p.Offset, nil
}

// testRecords returns n records with distinct keys, values, headers and
// timestamps one second apart, starting two hours ago.
func testRecords(n int, tag string) []*kgo.Record {
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Millisecond)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{
			Key:       []byte(fmt.Sprintf("%s-key-%d", tag, i)),
			Value:     append([]byte(fmt.Sprintf("%s-value-%d-", tag, i)), bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 100+i%50)...),
			Timestamp: base.Add(time.Duration(i) * time.Second),
			Headers:   []kgo.RecordHeader{{Key: "h", Value: []byte(fmt.Sprint(i))}, {Key: "tag", Value: []byte(tag)}},
		}
	}
	return recs
}

// checkRecords fails unless got[i] is want[from+i] at offset from+i, byte
// for byte (key, value, timestamp, headers).
func checkRecords(t testing.TB, got, want []*kgo.Record, from int) {
	t.Helper()
	for i, r := range got {
		if from+i >= len(want) {
			t.Fatalf("record at offset %d: beyond the %d produced", r.Offset, len(want))
		}
		w := want[from+i]
		if r.Offset != int64(from+i) || !bytes.Equal(r.Key, w.Key) || !bytes.Equal(r.Value, w.Value) || !r.Timestamp.Equal(w.Timestamp) || !sameHeaders(r.Headers, w.Headers) {
			t.Fatalf("record %d: offset %d key %q ts %v headers %v; want offset %d key %q ts %v headers %v",
				from+i, r.Offset, r.Key, r.Timestamp, r.Headers, from+i, w.Key, w.Timestamp, w.Headers)
		}
	}
}

func sameHeaders(a, b []kgo.RecordHeader) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// bucketKeys lists every key of the bucket with an independent S3 client,
// leaving out the tier's probe keys.
func bucketKeys(t testing.TB, mc *minio.Client, bucket string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var keys []string
	for o := range mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("minio list %s: %v", bucket, o.Err)
		}
		if !strings.HasPrefix(o.Key, "_strata/") {
			keys = append(keys, o.Key)
		}
	}
	return keys
}

func keysWith(keys []string, sub string) []string {
	var out []string
	for _, k := range keys {
		if strings.Contains(k, sub) {
			out = append(out, k)
		}
	}
	return out
}

// TestTierS3EndToEnd runs the real binary against a real S3-compatible
// server (Versity S3 Gateway): history moves to the bucket and reads back
// byte for byte from offset 0 and by timestamp; a wiped partition directory
// continues from the bucket; the bucket is readable by an independent S3
// client, keys carry the topic id, topic deletion empties the topic's keys
// and a re-created topic starts clean.
func TestTierS3EndToEnd(t *testing.T) {
	start := time.Now()
	gw := objstoretest.StartVersityGW(t)
	st := gw.NewStore(t, s3.Options{}) // creates the bucket
	bucket := st.Bucket()
	u, err := url.Parse(gw.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := minio.New(u.Host, &minio.Options{
		Creds:        miniocreds.NewStaticV4(gw.AccessKey, gw.SecretKey, ""),
		Region:       gw.Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}

	dataDir := t.TempDir()
	port := freePort(t)
	flags := []string{
		"--object-store", "s3", "--s3-endpoint", gw.Endpoint, "--s3-bucket", bucket, "--s3-path-style",
		"--s3-access-key", gw.AccessKey, "--s3-secret-key", gw.SecretKey, "--s3-region", gw.Region,
		"--tier-check-interval", "100ms",
	}
	p := startProc(t, dataDir, port, flags...)
	ctx := ctxT(t, 3*time.Minute)
	adm := newAdmin(t, p.addr)
	const topic = "tiered-s3"
	cfgs := map[string]*string{
		"remote.storage.enable": ptr("true"),
		"segment.bytes":         ptr("16384"),
		"local.retention.bytes": ptr("1"),
	}
	cr, err := adm.CreateTopic(ctx, 1, 1, cfgs, topic)
	if err == nil {
		err = cr.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	topicID := hex.EncodeToString(cr.ID[:])
	if cr.ID == [16]byte{} {
		t.Fatal("CreateTopics returned no topic id")
	}

	const n = 3000
	want := testRecords(n, "s3")
	cl := newClient(t, p.addr, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()))
	for i := 0; i < n; i += 100 {
		produceSync(t, ctx, cl, want[i:i+100])
	}
	for i, r := range want {
		if r.Offset != int64(i) {
			t.Fatalf("record %d acknowledged at offset %d", i, r.Offset)
		}
	}
	tProduced := time.Now()

	// KIP-1005's earliest-local (-4, v8) rises once local segments are in the
	// bucket and deleted locally.
	const threshold = n - 500
	var local int64
	waitFor(t, "local segments to move to the bucket", 30*time.Second, func() bool {
		local = listOffsetRaw(t, p.addr, topic, 8, -4)
		return local > threshold
	})
	tTiered := time.Now()
	tiered := listOffsetRaw(t, p.addr, topic, 9, -5)
	if tiered+1 < local || tiered >= n {
		t.Fatalf("latest tiered %d, earliest local %d: the tiers do not meet", tiered, local)
	}
	if got := listOffsetRaw(t, p.addr, topic, 9, -2); got != 0 {
		t.Fatalf("earliest offset %d, want 0", got)
	}
	if got := listOffsetRaw(t, p.addr, topic, 9, -1); got != n {
		t.Fatalf("latest offset %d, want %d", got, n)
	}
	// A timestamp lookup answered from the bucket.
	if got := listOffsetRaw(t, p.addr, topic, 9, want[777].Timestamp.UnixMilli()); got != 777 {
		t.Fatalf("offset for the timestamp of record 777: %d", got)
	}
	checkRecords(t, consumeAll(t, p.addr, topic, n, kgo.NewOffset().AtStart()), want, 0)
	ts := want[1234].Timestamp.Add(-500 * time.Millisecond)
	checkRecords(t, consumeAll(t, p.addr, topic, n-1234, kgo.NewOffset().AfterMilli(ts.UnixMilli())), want, 1234)
	tRead := time.Now()

	// The bucket as an ordinary S3 client sees it.
	keys := bucketKeys(t, mc, bucket)
	if len(keys) == 0 {
		t.Fatal("no objects in the bucket")
	}
	var segKeys []string
	for _, k := range keys {
		if !strings.Contains(k, topicID) || strings.Contains(k, topic) {
			t.Fatalf("key %q does not carry the topic id %s (or names the topic)", k, topicID)
		}
		if strings.HasSuffix(k, ".seg") {
			segKeys = append(segKeys, k)
		}
	}
	if len(segKeys) < 2 {
		t.Fatalf("segment objects: %v", segKeys)
	}
	obj, err := mc.GetObject(ctx, bucket, segKeys[0], minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		t.Fatalf("minio get %s: %v", segKeys[0], err)
	}
	if len(body) < 24 || string(body[len(body)-8:]) != "STRATSEG" || body[len(body)-12] != 0 || body[len(body)-11] != 1 {
		t.Fatalf("segment object %s (%d bytes) does not end in a version 1 STRATSEG trailer", segKeys[0], len(body))
	}
	// The manifest, read with the test's own client, names it with its size.
	mcl := manifestClient(st)
	var tid manifest.TopicID
	copy(tid[:], cr.ID[:])
	cur, _, err := mcl.Load(ctx, tid, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range cur.Entries {
		if e.Key == segKeys[0] {
			found = e.StoredSize == int64(len(body))
		}
	}
	if !found {
		t.Fatalf("newest manifest does not name %s with its size %d", segKeys[0], len(body))
	}

	// Stop, wipe the partition directory (not the metadata), restart: the
	// partition continues at the remote end, history still reads.
	if err := p.term(); err != nil {
		t.Fatal(err)
	}
	cur, _, err = mcl.Load(ctx, tid, 0)
	if err != nil {
		t.Fatal(err)
	}
	remoteEnd := cur.EndOffset()
	if remoteEnd <= threshold || remoteEnd > n {
		t.Fatalf("remote end %d after stop", remoteEnd)
	}
	dirs, _ := filepath.Glob(filepath.Join(dataDir, "logs", topic+"-0.*"))
	if len(dirs) != 1 {
		t.Fatalf("partition dirs: %v", dirs)
	}
	if err := os.RemoveAll(dirs[0]); err != nil {
		t.Fatal(err)
	}
	p = startProc(t, dataDir, port, flags...)
	for _, c := range []struct {
		v       int16
		ts, off int64
	}{{9, -1, remoteEnd}, {9, -2, 0}, {8, -4, remoteEnd}, {9, -5, remoteEnd - 1}} {
		if got := listOffsetRaw(t, p.addr, topic, c.v, c.ts); got != c.off {
			t.Fatalf("after the wipe: ListOffsets v%d ts %d = %d, want %d\n%s", c.v, c.ts, got, c.off, p.logs())
		}
	}
	checkRecords(t, consumeAll(t, p.addr, topic, int(remoteEnd), kgo.NewOffset().AtStart()), want, 0)
	more := testRecords(50, "after-wipe")
	cl = newClient(t, p.addr, kgo.DefaultProduceTopic(topic))
	produceSync(t, ctx, cl, more)
	for i, r := range more {
		if r.Offset != remoteEnd+int64(i) {
			t.Fatalf("record %d produced after the wipe at offset %d, want %d", i, r.Offset, remoteEnd+int64(i))
		}
	}
	got := consumeAll(t, p.addr, topic, int(remoteEnd)+len(more), kgo.NewOffset().AtStart())
	checkRecords(t, got[:remoteEnd], want, 0)
	checkRecords(t, got[remoteEnd:], append(make([]*kgo.Record, remoteEnd), more...), int(remoteEnd))
	tRestart := time.Now()

	// Deleting the topic empties its keys; a re-created topic of the same
	// name has a new id, new keys and starts at offset 0.
	adm = newAdmin(t, p.addr)
	if _, err := adm.DeleteTopics(ctx, topic); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted topic's objects to go", 30*time.Second, func() bool {
		return len(keysWith(bucketKeys(t, mc, bucket), topicID)) == 0
	})
	var cr2 kadmCreate
	waitFor(t, "the topic to be re-created", 30*time.Second, func() bool {
		r, err := adm.CreateTopic(ctx, 1, 1, cfgs, topic)
		if err == nil {
			err = r.Err
		}
		cr2 = kadmCreate{r.ID, err}
		return err == nil
	})
	topicID2 := hex.EncodeToString(cr2.id[:])
	if topicID2 == topicID {
		t.Fatalf("re-created topic has the old id %s", topicID)
	}
	again := testRecords(400, "again")
	cl = newClient(t, p.addr, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()))
	for i := 0; i < len(again); i += 100 {
		produceSync(t, ctx, cl, again[i:i+100])
	}
	if again[0].Offset != 0 {
		t.Fatalf("re-created topic starts at offset %d", again[0].Offset)
	}
	waitFor(t, "the re-created topic to upload", 30*time.Second, func() bool {
		return len(keysWith(bucketKeys(t, mc, bucket), topicID2)) > 0 && listOffsetRaw(t, p.addr, topic, 9, -5) >= 0
	})
	for _, k := range bucketKeys(t, mc, bucket) {
		if strings.Contains(k, topicID) || !strings.Contains(k, topicID2) {
			t.Fatalf("after re-creation, key %q (old id %s, new id %s)", k, topicID, topicID2)
		}
	}
	checkRecords(t, consumeAll(t, p.addr, topic, len(again), kgo.NewOffset().AtStart()), again, 0)
	if err := p.term(); err != nil {
		t.Fatal(err)
	}
	t.Logf("timings: produce %v, tiering %v, reads %v, wipe+restart+reads %v, delete+recreate %v, total %v",
		tProduced.Sub(start).Round(time.Millisecond), tTiered.Sub(tProduced).Round(time.Millisecond),
		tRead.Sub(tTiered).Round(time.Millisecond), tRestart.Sub(tRead).Round(time.Millisecond),
		time.Since(tRestart).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

type kadmCreate struct {
	id  [16]byte
	err error
}
