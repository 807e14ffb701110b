package e2e

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCompactTopicRequiresKeys: on a topic with cleanup.policy=compact a
// keyed record is acknowledged and a keyless one fails with INVALID_RECORD
// (and is not stored); a compacted topic may also be tiered when the broker
// has an object store.
func TestCompactTopicRequiresKeys(t *testing.T) {
	ip := startInproc(t, "", withTier(t, t.TempDir()))
	ctx := ctxT(t, time.Minute)
	adm := newAdmin(t, ip.addr)
	for _, c := range []struct {
		topic   string
		configs map[string]*string
	}{
		{"compacted", map[string]*string{"cleanup.policy": ptr("compact")}},
		{"compacted-tiered", map[string]*string{"cleanup.policy": ptr("compact,delete"), "remote.storage.enable": ptr("true")}},
	} {
		t.Run(c.topic, func(t *testing.T) {
			r, err := adm.CreateTopic(ctx, 1, 1, c.configs, c.topic)
			if err == nil {
				err = r.Err
			}
			if err != nil {
				t.Fatalf("create: %v (%s)", err, r.ErrMessage)
			}
			cl := newClient(t, ip.addr, kgo.DefaultProduceTopic(c.topic))
			produceSync(t, ctx, cl, []*kgo.Record{{Key: []byte("k"), Value: []byte("v1")}})
			err = cl.ProduceSync(ctx, &kgo.Record{Value: []byte("no key")}).FirstErr()
			if !errors.Is(err, kerr.InvalidRecord) {
				t.Fatalf("keyless record: %v, want INVALID_RECORD", err)
			}
			produceSync(t, ctx, cl, []*kgo.Record{{Key: []byte("k"), Value: []byte("v2")}})
			got := consumeAll(t, ip.addr, c.topic, 2, kgo.NewOffset().AtStart())
			if len(got) != 2 || string(got[0].Value) != "v1" || string(got[1].Value) != "v2" || got[1].Offset != 1 {
				t.Fatalf("consumed %d records: %v", len(got), got)
			}
		})
	}
}
