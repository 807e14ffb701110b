package e2e

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/strata-io/strata/ingest/log/vfs"
)

// produceRaw sends one produce request with the client (no retries) and
// returns the partition's error code.
func produceRaw(t testing.TB, ctx context.Context, cl *kgo.Client, topic string, n int) int16 {
	t.Helper()
	req := produceReq(topic, validBatch(n))
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("produce request: %v", err)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

func withFS(fs vfs.FS) inprocOpt {
	return func(b *brokerCfg, _ *wireCfg) { b.FS = fs }
}

// TestStorageFaults injects I/O errors and a full disk under the broker:
// produce gets KAFKA_STORAGE_ERROR, fetch keeps serving durable data, other
// partitions are unaffected, and after a restart with the fault gone the
// partition takes writes again with nothing lost.
func TestStorageFaults(t *testing.T) {
	fs := vfs.NewCrashFS()
	fs.SetFreeSpace(1 << 40)
	dir := t.TempDir()
	ip := startInproc(t, dir, withFS(fs))
	ctx := ctxT(t, time.Minute)
	adm := newAdmin(t, ip.addr)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "faulty"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "healthy"); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, ip.addr)
	for i := 0; i < 10; i++ {
		if code := produceRaw(t, ctx, cl, "faulty", 10); code != 0 {
			t.Fatalf("produce before fault: %v", kerr.ErrorForCode(code))
		}
	}

	// EIO on every write and sync of the faulty partition.
	fs.InjectError(func(op vfs.Op, path string) error {
		if strings.Contains(path, "faulty-0") && (op == vfs.OpWrite || op == vfs.OpSync) {
			return syscall.EIO
		}
		return nil
	})
	if code := produceRaw(t, ctx, cl, "faulty", 10); code != kerr.KafkaStorageError.Code {
		t.Fatalf("produce with EIO: %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(code))
	}
	if code := produceRaw(t, ctx, cl, "healthy", 10); code != 0 {
		t.Fatalf("other partition during fault: %v", kerr.ErrorForCode(code))
	}
	// The error is sticky: lifting the fault does not make the partition
	// writable before a restart.
	fs.InjectError(nil)
	if code := produceRaw(t, ctx, cl, "faulty", 10); code != kerr.KafkaStorageError.Code {
		t.Fatalf("produce after fault lifted, before restart: %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(code))
	}
	got := consumeAll(t, ip.addr, "faulty", 100, kgo.NewOffset().AtStart())
	for i, r := range got {
		if r.Offset != int64(i) || string(r.Value) != "v"+strconv.Itoa(i%10) {
			t.Fatalf("record %d after fault: offset %d value %q", i, r.Offset, r.Value)
		}
	}

	// Restart: the partition recovers and takes writes; nothing durable lost.
	ip.stop()
	ip = startInproc(t, dir, withFS(fs))
	cl = newClient(t, ip.addr)
	if code := produceRaw(t, ctx, cl, "faulty", 10); code != 0 {
		t.Fatalf("produce after restart: %v", kerr.ErrorForCode(code))
	}
	got = consumeAll(t, ip.addr, "faulty", 110, kgo.NewOffset().AtStart())
	if len(got) != 110 || got[109].Offset != 109 {
		t.Fatalf("after restart: %d records, last offset %d", len(got), got[len(got)-1].Offset)
	}

	// A full disk refuses appends without poisoning the partition: once
	// space is back, writes succeed again without a restart.
	fs.SetFreeSpace(0)
	refused := false
	for i := 0; i < 200 && !refused; i++ { // free space is checked every few MiB
		req := produceReq("faulty", batchOfSize(64<<10))
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		switch code := resp.Topics[0].Partitions[0].ErrorCode; code {
		case 0:
		case kerr.KafkaStorageError.Code:
			refused = true
		default:
			t.Fatalf("disk full: %v", kerr.ErrorForCode(code))
		}
	}
	if !refused {
		t.Fatal("appends never refused with the disk full")
	}
	fs.SetFreeSpace(1 << 40)
	ok := false
	for i := 0; i < 200 && !ok; i++ {
		req := produceReq("faulty", batchOfSize(64<<10))
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		ok = resp.Topics[0].Partitions[0].ErrorCode == 0
	}
	if !ok {
		t.Fatal("appends still refused after space came back")
	}
}

func batchOfSize(n int) []byte {
	return batchWith(make([]byte, n))
}
