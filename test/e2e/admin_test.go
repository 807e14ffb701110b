package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func ptr[T any](v T) *T { return &v }

func TestTopicAdmin(t *testing.T) {
	ip := startInproc(t, "")
	adm := newAdmin(t, ip.addr)
	ctx := ctxT(t, time.Minute)

	// Create with configs; validate-only creates nothing.
	if _, err := adm.ValidateCreateTopics(ctx, 3, 1, nil, "validated"); err != nil {
		t.Fatal(err)
	}
	if td, err := adm.ListTopics(ctx, "validated"); err != nil || td.Has("validated") && td["validated"].Err == nil {
		t.Fatalf("validate-only created the topic: %v %v", td, err)
	}
	resp, err := adm.CreateTopic(ctx, 3, 1, map[string]*string{"retention.ms": ptr("3600000")}, "orders")
	if err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	if resp.ID == [16]byte{} {
		t.Fatal("created topic has a zero topic id")
	}
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "orders"); !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("second create: %v, want TOPIC_ALREADY_EXISTS", err)
	}

	// Invalid names, partitions, replication factors and configs.
	bad := []struct {
		name    string
		parts   int32
		rf      int16
		configs map[string]*string
		want    *kerr.Error
		msg     string
	}{
		{"bad/name", 1, 1, nil, kerr.InvalidTopicException, "characters"},
		{"..", 1, 1, nil, kerr.InvalidTopicException, ""},
		{strings.Repeat("x", 250), 1, 1, nil, kerr.InvalidTopicException, "249"},
		{"zero-parts", 0, 1, nil, kerr.InvalidPartitions, ""},
		{"rf3", 1, 3, nil, kerr.InvalidReplicationFactor, ""},
		{"badcfg", 1, 1, map[string]*string{"retention.ms": ptr("soon")}, kerr.InvalidConfig, "retention.ms"},
		{"unknowncfg", 1, 1, map[string]*string{"no.such.config": ptr("1")}, kerr.InvalidConfig, "no.such.config"},
		{"badpolicy", 1, 1, map[string]*string{"cleanup.policy": ptr("compact,shred")}, kerr.InvalidConfig, "cleanup.policy"},
		{"tiering-off", 1, 1, map[string]*string{"remote.storage.enable": ptr("true")}, kerr.InvalidConfig, "remote.storage.enable"},
	}
	for _, c := range bad {
		r, err := adm.CreateTopic(ctx, c.parts, c.rf, c.configs, c.name)
		if err == nil {
			err = r.Err
		}
		if !errors.Is(err, c.want) {
			t.Errorf("create %q: %v, want %v", c.name, err, c.want)
			continue
		}
		if c.msg != "" && !strings.Contains(r.ErrMessage, c.msg) {
			t.Errorf("create %q: message %q does not name %q", c.name, r.ErrMessage, c.msg)
		}
	}

	// Describe and alter configs.
	rcs, err := adm.DescribeTopicConfigs(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On("orders", nil)
	found := false
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" {
			found = true
			if c.MaybeValue() != "3600000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
				t.Fatalf("retention.ms = %q source %v", c.MaybeValue(), c.Source)
			}
		}
		if c.Key == "segment.bytes" && (c.MaybeValue() != "1073741824" || c.Source != kmsg.ConfigSourceDefaultConfig) {
			t.Fatalf("segment.bytes = %q source %v", c.MaybeValue(), c.Source)
		}
	}
	if !found {
		t.Fatal("retention.ms not described")
	}
	ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "segment.bytes", Value: ptr("1048576")}, {Name: "retention.ms", Op: kadm.DeleteConfig}}, "orders")
	if err != nil || ar[0].Err != nil {
		t.Fatalf("incremental alter: %v %+v", err, ar)
	}
	ar, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: ptr("-5")}}, "orders")
	if err == nil && (len(ar) == 0 || ar[0].Err == nil) {
		t.Fatal("negative max.message.bytes accepted")
	}
	rcs, _ = adm.DescribeTopicConfigs(ctx, "orders")
	rc, _ = rcs.On("orders", nil)
	for _, c := range rc.Configs {
		switch c.Key {
		case "segment.bytes":
			if c.MaybeValue() != "1048576" {
				t.Fatalf("segment.bytes after alter = %q", c.MaybeValue())
			}
		case "retention.ms":
			if c.Source != kmsg.ConfigSourceDefaultConfig {
				t.Fatalf("retention.ms still overridden after DELETE")
			}
		}
	}
	// Legacy AlterConfigs replaces the whole set.
	if _, err := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.bytes", Value: ptr("1000000")}}, "orders"); err != nil {
		t.Fatal(err)
	}
	rcs, _ = adm.DescribeTopicConfigs(ctx, "orders")
	rc, _ = rcs.On("orders", nil)
	for _, c := range rc.Configs {
		if c.Key == "segment.bytes" && c.Source != kmsg.ConfigSourceDefaultConfig {
			t.Fatal("AlterConfigs kept an override it was not given")
		}
	}

	// Partitions only grow.
	if _, err := adm.UpdatePartitions(ctx, 5, "orders"); err != nil {
		t.Fatal(err)
	}
	if r, err := adm.UpdatePartitions(ctx, 2, "orders"); err == nil && r["orders"].Err == nil {
		t.Fatal("shrinking partitions accepted")
	}
	td, err := adm.ListTopics(ctx, "orders")
	if err != nil || len(td["orders"].Partitions) != 5 {
		t.Fatalf("partitions after grow: %v %v", len(td["orders"].Partitions), err)
	}
	// The new partitions take writes.
	cl := newClient(t, ip.addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceSync(t, ctx, cl, []*kgo.Record{{Topic: "orders", Partition: 4, Value: []byte("x")}})

	// Delete, then re-create: a new id and no old data.
	oldID := resp.ID
	if _, err := adm.DeleteTopics(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if r, err := adm.DeleteTopics(ctx, "orders"); err == nil && r["orders"].Err == nil {
		t.Fatal("second delete succeeded")
	}
	resp, err = adm.CreateTopic(ctx, 5, 1, nil, "orders")
	if err != nil || resp.ID == oldID {
		t.Fatalf("re-create: %v, id reused: %v", err, resp.ID == oldID)
	}
	end, _ := adm.ListEndOffsets(ctx, "orders")
	if o, _ := end.Lookup("orders", 4); o.Offset != 0 {
		t.Fatalf("re-created topic has end offset %d", o.Offset)
	}

	// Cluster description.
	bm, err := adm.BrokerMetadata(ctx)
	if err != nil || len(bm.Brokers) != 1 || bm.Cluster == "" {
		t.Fatalf("broker metadata: %+v %v", bm, err)
	}
}

func TestDeleteRecordsMovesLogStart(t *testing.T) {
	ip := startInproc(t, "")
	adm := newAdmin(t, ip.addr)
	ctx := ctxT(t, time.Minute)
	topic := "trim"
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"segment.bytes": ptr("2048")}, topic); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, ip.addr, kgo.DefaultProduceTopic(topic))
	for i := 0; i < 50; i++ {
		produceSync(t, ctx, cl, []*kgo.Record{{Value: make([]byte, 200)}})
	}
	dr, err := adm.DeleteRecords(ctx, kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: 30}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := dr.Lookup(topic, 0); r.Err != nil || r.LowWatermark != 30 {
		t.Fatalf("delete records: %+v", r)
	}
	start, _ := adm.ListStartOffsets(ctx, topic)
	if o, _ := start.Lookup(topic, 0); o.Offset != 30 {
		t.Fatalf("start offset %d, want 30", o.Offset)
	}
	got := consumeAll(t, ip.addr, topic, 20, kgo.NewOffset().AtStart())
	if got[0].Offset != 30 {
		t.Fatalf("first consumed offset %d, want 30", got[0].Offset)
	}
	// Beyond the high watermark is refused.
	dr, _ = adm.DeleteRecords(ctx, kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: 500}}})
	if r, _ := dr.Lookup(topic, 0); !errors.Is(r.Err, kerr.OffsetOutOfRange) {
		t.Fatalf("delete beyond HW: %v", r.Err)
	}
	// The new start survives a restart.
	dir := ip.dir
	ip.stop()
	ip = startInproc(t, dir)
	adm = newAdmin(t, ip.addr)
	start, _ = adm.ListStartOffsets(ctx, topic)
	if o, _ := start.Lookup(topic, 0); o.Offset != 30 {
		t.Fatalf("start offset after restart %d, want 30", o.Offset)
	}
}

func TestPartitionBudget(t *testing.T) {
	ip := startInproc(t, "", func(b *brokerCfg, _ *wireCfg) { b.MaxPartitions = 5 })
	adm := newAdmin(t, ip.addr)
	ctx := ctxT(t, time.Minute)
	if _, err := adm.CreateTopic(ctx, 4, 1, nil, "fits"); err != nil {
		t.Fatal(err)
	}
	r, err := adm.CreateTopic(ctx, 2, 1, nil, "too-many")
	if err == nil {
		err = r.Err
	}
	if !errors.Is(err, kerr.InvalidPartitions) || !strings.Contains(r.ErrMessage, "at most 5") {
		t.Fatalf("create beyond the partition budget: %v %q", err, r.ErrMessage)
	}
	if cr, err := adm.UpdatePartitions(ctx, 6, "fits"); err == nil && cr["fits"].Err == nil {
		t.Fatal("growing beyond the partition budget accepted")
	}
	if _, err := adm.UpdatePartitions(ctx, 5, "fits"); err != nil {
		t.Fatal(err)
	}
}
