package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLocalPersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	self := Broker{ID: 3, Host: "127.0.0.1", Port: 9092}
	l, err := OpenLocal(dir, self)
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	l.Watch(func(ev Event) { events = append(events, ev) })
	a, err := l.CreateTopic(Topic{Name: "a", Partitions: make([]Partition, 2), Configs: map[string]string{"retention.ms": "1000"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == (TopicID{}) || a.Partitions[1].Leader != 3 {
		t.Fatalf("created topic: %+v", a)
	}
	if _, err := l.CreateTopic(Topic{Name: "a", Partitions: make([]Partition, 1)}, 1); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if _, err := l.CreatePartitions("a", 4); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreatePartitions("a", 3); !errors.Is(err, ErrInvalidPartition) {
		t.Fatalf("shrink: %v", err)
	}
	if _, err := l.SetConfigs("a", map[string]string{"segment.bytes": "4096"}); err != nil {
		t.Fatal(err)
	}
	b, _ := l.CreateTopic(Topic{Name: "b", Partitions: make([]Partition, 1)}, 1)
	if _, err := l.DeleteTopic("b"); err != nil {
		t.Fatal(err)
	}
	if len(events) != 5 || !events[4].Deleted || events[4].ID != b.ID {
		t.Fatalf("events: %+v", events)
	}
	cid := l.ClusterID()

	l2, err := OpenLocal(dir, self)
	if err != nil {
		t.Fatal(err)
	}
	if l2.ClusterID() != cid {
		t.Fatalf("cluster id changed: %q → %q", cid, l2.ClusterID())
	}
	got, ok := l2.Topic("a")
	if !ok || got.ID != a.ID || len(got.Partitions) != 4 || got.Configs["segment.bytes"] != "4096" || got.Configs["retention.ms"] != "" {
		t.Fatalf("reopened topic: %+v", got)
	}
	if _, ok := l2.Topic("b"); ok {
		t.Fatal("deleted topic came back")
	}
	if byID, ok := l2.TopicByID(a.ID); !ok || byID.Name != "a" {
		t.Fatal("lookup by id failed after reopen")
	}
}

func TestLocalRefusesUnknownVersion(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "metadata.json"), []byte(`{"version": 9, "cluster_id": "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenLocal(dir, Broker{})
	if err == nil || !strings.Contains(err.Error(), "version 9") || !strings.Contains(err.Error(), "metadata.json") {
		t.Fatalf("unknown version: %v", err)
	}
}

func FuzzDecodeLocalFile(f *testing.F) {
	f.Add([]byte(`{"version":1,"cluster_id":"c","topics":[{"name":"a","id":"0123456789abcdef0123456789abcdef","partitions":2,"leader_epochs":[0,1],"configs":{"retention.ms":"5"}}]}`))
	f.Add([]byte(`{"version":1,"topics":[{"name":"a","id":"zz","partitions":1}]}`))
	f.Add([]byte(`{"version":1,"topics":[{"name":"a","id":"0123456789abcdef0123456789abcdef","partitions":2000000000}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, topics, err := decodeLocalFile(raw, 0)
		if err != nil {
			return
		}
		for _, tp := range topics {
			if len(tp.Partitions) == 0 || len(tp.Partitions) > maxPartitions {
				t.Fatalf("decoded topic with %d partitions", len(tp.Partitions))
			}
		}
	})
}
