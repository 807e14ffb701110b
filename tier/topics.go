package tier

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/strata-io/strata/tier/objstore"
)

// topicsPrefix holds one descriptor per tiered topic, so that a broker with
// a new data directory can find the topics whose history is in the bucket
// (object keys carry topic ids, not names).
const topicsPrefix = "_strata/topics/"

// TopicDescriptor names a tiered topic in the bucket.
type TopicDescriptor struct {
	Version    int               `json:"version"`
	Name       string            `json:"name"`
	ID         string            `json:"id"` // 32 hex digits
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
}

const topicDescriptorVersion = 1

func topicKey(id [16]byte) string { return topicsPrefix + hex.EncodeToString(id[:]) }

// PutTopic writes (or replaces) the descriptor of a tiered topic.
func (m *Manager) PutTopic(ctx context.Context, id [16]byte, name string, partitions int32, configs map[string]string) error {
	raw, err := json.Marshal(TopicDescriptor{Version: topicDescriptorVersion, Name: name, ID: hex.EncodeToString(id[:]), Partitions: partitions, Configs: configs})
	if err != nil {
		return err
	}
	if err := m.store.Put(ctx, topicKey(id), bytes.NewReader(raw), int64(len(raw))); err != nil {
		return fmt.Errorf("tier: write topic descriptor of %s: %w", name, err)
	}
	return nil
}

// DeleteTopic removes a topic's descriptor (its data is deleted separately).
func (m *Manager) DeleteTopic(ctx context.Context, id [16]byte) error {
	if err := m.store.Delete(ctx, topicKey(id)); err != nil {
		return fmt.Errorf("tier: delete topic descriptor %x: %w", id, err)
	}
	return nil
}

// Topics lists the descriptors of the tiered topics in the bucket. A
// descriptor that cannot be read or has an unknown version is reported as
// an error, never guessed at.
func (m *Manager) Topics(ctx context.Context) ([]TopicDescriptor, error) {
	var keys []string
	err := m.store.List(ctx, topicsPrefix, func(o objstore.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tier: list topics: %w", err)
	}
	var out []TopicDescriptor
	for _, k := range keys {
		rc, err := m.store.Get(ctx, k)
		if errors.Is(err, objstore.ErrNotFound) {
			continue // deleted since the listing
		} else if err != nil {
			return nil, fmt.Errorf("tier: read %s: %w", k, err)
		}
		raw, err := io.ReadAll(io.LimitReader(rc, 1<<20))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("tier: read %s: %w", k, err)
		}
		var d TopicDescriptor
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, fmt.Errorf("tier: decode %s: %w", k, err)
		}
		if d.Version != topicDescriptorVersion {
			return nil, fmt.Errorf("tier: %s: unsupported topic descriptor version %d (this build reads %d)", k, d.Version, topicDescriptorVersion)
		}
		if id, err := hex.DecodeString(d.ID); err != nil || len(id) != 16 || !strings.HasSuffix(k, d.ID) || d.Partitions <= 0 {
			return nil, fmt.Errorf("tier: %s: invalid topic descriptor", k)
		}
		out = append(out, d)
	}
	return out, nil
}
