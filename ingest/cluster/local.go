package cluster

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// localFormatVersion is the version of the metadata file. Bump it for any
// change that an older binary could misread.
const localFormatVersion = 1

// localFile is the on-disk form of Local's state.
type localFile struct {
	Version   int          `json:"version"`
	ClusterID string       `json:"cluster_id"`
	Topics    []localTopic `json:"topics"`
}

type localTopic struct {
	Name       string            `json:"name"`
	ID         string            `json:"id"`
	Internal   bool              `json:"internal,omitempty"`
	Partitions int32             `json:"partitions"`
	Epochs     []int32           `json:"leader_epochs,omitempty"`
	Configs    map[string]string `json:"configs,omitempty"`
}

// Local is the single-node Store: this broker leads every partition, and the
// state lives in one JSON file written atomically (temp file, fsync, rename,
// directory fsync).
type Local struct {
	path string
	self Broker

	mu struct {
		sync.RWMutex
		clusterID string
		byName    map[string]Topic
		byID      map[TopicID]string
		watchers  []func(Event)
	}
	// writeMu serialises writers so that events reach watchers in order.
	writeMu sync.Mutex
}

// OpenLocal opens (or creates) the metadata file in dir for a single broker.
func OpenLocal(dir string, self Broker) (*Local, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("metadata dir: %w", err)
	}
	l := &Local{path: filepath.Join(dir, "metadata.json"), self: self}
	l.mu.byName = map[string]Topic{}
	l.mu.byID = map[TopicID]string{}
	raw, err := os.ReadFile(l.path)
	switch {
	case os.IsNotExist(err):
		l.mu.clusterID = newClusterID()
		if err := l.persistLocked(); err != nil {
			return nil, err
		}
		return l, nil
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", l.path, err)
	}
	clusterID, topics, err := decodeLocalFile(raw, self.ID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.path, err)
	}
	l.mu.clusterID = clusterID
	for _, t := range topics {
		l.mu.byName[t.Name] = t
		l.mu.byID[t.ID] = t.Name
	}
	return l, nil
}

// newClusterID returns a random cluster id in Kafka's form (a base64 UUID).
func newClusterID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// maxPartitions bounds the partitions of one topic in a metadata file, so a
// corrupt count cannot exhaust memory.
const maxPartitions = 1 << 20

// decodeLocalFile parses the metadata file of a single broker with id self.
func decodeLocalFile(raw []byte, self int32) (string, []Topic, error) {
	var f localFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return "", nil, fmt.Errorf("decode metadata: %w", err)
	}
	if f.Version != localFormatVersion {
		return "", nil, fmt.Errorf("unsupported metadata format version %d (this binary reads %d)", f.Version, localFormatVersion)
	}
	seenName := map[string]bool{}
	seenID := map[TopicID]bool{}
	var topics []Topic
	for _, lt := range f.Topics {
		id, err := parseTopicID(lt.ID)
		if err != nil {
			return "", nil, fmt.Errorf("topic %q: %w", lt.Name, err)
		}
		if lt.Partitions <= 0 || lt.Partitions > maxPartitions {
			return "", nil, fmt.Errorf("topic %q: invalid partition count %d", lt.Name, lt.Partitions)
		}
		if seenName[lt.Name] || seenID[id] {
			return "", nil, fmt.Errorf("topic %q listed twice", lt.Name)
		}
		seenName[lt.Name], seenID[id] = true, true
		t := Topic{Name: lt.Name, ID: id, Internal: lt.Internal, Configs: lt.Configs}
		if t.Configs == nil {
			t.Configs = map[string]string{}
		}
		for i := int32(0); i < lt.Partitions; i++ {
			var epoch int32
			if int(i) < len(lt.Epochs) {
				epoch = lt.Epochs[i]
			}
			t.Partitions = append(t.Partitions, singleNodePartition(self, epoch))
		}
		topics = append(topics, t)
	}
	return f.ClusterID, topics, nil
}

func parseTopicID(s string) (TopicID, error) {
	var id TopicID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("bad topic id %q", s)
	}
	copy(id[:], b)
	return id, nil
}

func (l *Local) partition(epoch int32) Partition { return singleNodePartition(l.self.ID, epoch) }

func singleNodePartition(self, epoch int32) Partition {
	return Partition{Leader: self, LeaderEpoch: epoch, Replicas: []int32{self}, ISR: []int32{self}}
}

// ClusterID implements Store.
func (l *Local) ClusterID() string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.mu.clusterID
}

// ControllerID implements Store: a single node is its own controller.
func (l *Local) ControllerID() int32 { return l.self.ID }

// Brokers implements Store.
func (l *Local) Brokers() []Broker { return []Broker{l.self} }

// Topics implements Store. The result is sorted by name.
func (l *Local) Topics() []Topic {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]Topic, 0, len(l.mu.byName))
	for _, t := range l.mu.byName {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Topic implements Store.
func (l *Local) Topic(name string) (Topic, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	t, ok := l.mu.byName[name]
	return t, ok
}

// TopicByID implements Store.
func (l *Local) TopicByID(id TopicID) (Topic, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	name, ok := l.mu.byID[id]
	if !ok {
		return Topic{}, false
	}
	return l.mu.byName[name], true
}

// Watch implements Store.
func (l *Local) Watch(fn func(Event)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.watchers = append(l.mu.watchers, fn)
}

// update applies fn to the state under the lock, persists it and notifies
// watchers. Topics stored in the maps are never mutated in place, so
// snapshots handed out earlier stay valid.
func (l *Local) update(fn func() (Topic, Event, error)) (Topic, error) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	t, ev, err := fn()
	if err == nil {
		err = l.persistLocked()
	}
	watchers := append([]func(Event){}, l.mu.watchers...)
	l.mu.Unlock()
	if err != nil {
		return Topic{}, err
	}
	for _, w := range watchers {
		w(ev)
	}
	return t, nil
}

// CreateTopic implements Store. The topic's partitions are all led by this
// broker at epoch 0; a zero ID is replaced by a fresh one. The replication
// factor must be 1.
func (l *Local) CreateTopic(t Topic, replicationFactor int) (Topic, error) {
	if replicationFactor != 1 {
		return Topic{}, fmt.Errorf("%w: %d on a single broker", ErrInvalidReplication, replicationFactor)
	}
	return l.update(func() (Topic, Event, error) {
		if _, ok := l.mu.byName[t.Name]; ok {
			return Topic{}, Event{}, ErrTopicExists
		}
		if len(t.Partitions) == 0 {
			return Topic{}, Event{}, ErrInvalidPartition
		}
		t = t.Clone()
		if t.ID == (TopicID{}) {
			t.ID = NewTopicID()
		}
		for i := range t.Partitions {
			t.Partitions[i] = l.partition(0)
		}
		l.mu.byName[t.Name] = t
		l.mu.byID[t.ID] = t.Name
		return t, Event{Topic: t.Name, ID: t.ID}, nil
	})
}

// DeleteTopic implements Store.
func (l *Local) DeleteTopic(name string) (Topic, error) {
	return l.update(func() (Topic, Event, error) {
		t, ok := l.mu.byName[name]
		if !ok {
			return Topic{}, Event{}, ErrUnknownTopic
		}
		delete(l.mu.byName, name)
		delete(l.mu.byID, t.ID)
		return t, Event{Topic: name, ID: t.ID, Deleted: true}, nil
	})
}

// CreatePartitions implements Store: it grows the topic to total partitions.
func (l *Local) CreatePartitions(name string, total int32) (Topic, error) {
	return l.update(func() (Topic, Event, error) {
		t, ok := l.mu.byName[name]
		if !ok {
			return Topic{}, Event{}, ErrUnknownTopic
		}
		if int(total) <= len(t.Partitions) {
			return Topic{}, Event{}, fmt.Errorf("%w: topic %s has %d partitions, asked for %d", ErrInvalidPartition, name, len(t.Partitions), total)
		}
		t = t.Clone()
		for len(t.Partitions) < int(total) {
			t.Partitions = append(t.Partitions, l.partition(0))
		}
		l.mu.byName[name] = t
		return t, Event{Topic: name, ID: t.ID}, nil
	})
}

// SetConfigs implements Store: it replaces the topic's overrides.
func (l *Local) SetConfigs(name string, configs map[string]string) (Topic, error) {
	return l.update(func() (Topic, Event, error) {
		t, ok := l.mu.byName[name]
		if !ok {
			return Topic{}, Event{}, ErrUnknownTopic
		}
		t = t.Clone()
		t.Configs = make(map[string]string, len(configs))
		for k, v := range configs {
			t.Configs[k] = v
		}
		l.mu.byName[name] = t
		return t, Event{Topic: name, ID: t.ID}, nil
	})
}

// Close implements Store.
func (l *Local) Close() error { return nil }

func (l *Local) persistLocked() error {
	raw, err := encodeLocalFile(l.mu.clusterID, l.mu.byName)
	if err != nil {
		return err
	}
	return WriteFileAtomic(l.path, raw)
}

// encodeLocalFile writes the metadata file format.
func encodeLocalFile(clusterID string, topics map[string]Topic) ([]byte, error) {
	f := localFile{Version: localFormatVersion, ClusterID: clusterID}
	for _, t := range topics {
		lt := localTopic{Name: t.Name, ID: t.ID.String(), Internal: t.Internal, Partitions: int32(len(t.Partitions)), Configs: t.Configs}
		for _, p := range t.Partitions {
			lt.Epochs = append(lt.Epochs, p.LeaderEpoch)
		}
		f.Topics = append(f.Topics, lt)
	}
	sort.Slice(f.Topics, func(i, j int) bool { return f.Topics[i].Name < f.Topics[j].Name })
	raw, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	return raw, nil
}

// WriteFileAtomic replaces path with data durably: a temp file in the same
// directory is written and fsynced, renamed over path, and the directory is
// fsynced.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
