package wire

// Helpers shared by the consumer group handlers (keys 8–16, 42, 47): the
// coordinator lookup and waiting on the coordinator's answer channels.

import (
	"context"
	"errors"
	"net"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/strata-io/strata/ingest/broker"
	"github.com/strata-io/strata/ingest/group"
)

// coordinatorFor returns the coordinator of a group, or the error code to
// answer with.
func coordinatorFor(s *Server, groupID string) (*group.Coordinator, error) {
	c, err := s.Broker.GroupCoordinator(groupID)
	if errors.Is(err, broker.ErrNoGroups) {
		return nil, kerr.CoordinatorNotAvailable
	}
	return c, err
}

// partitionKnown reports whether the cluster has the topic partition,
// whichever broker leads it (offsets may be committed for any).
func partitionKnown(s *Server, topic string, p int32) bool {
	t, ok := s.Broker.Meta().Topic(topic)
	return ok && p >= 0 && int(p) < len(t.Partitions)
}

// await returns the value ch delivers, or ok=false when the request's
// context ends first (the connection closed: nothing is written).
func await[T any](ctx context.Context, ch <-chan T) (v T, ok bool) {
	select {
	case v = <-ch:
		return v, true
	case <-ctx.Done():
		return v, false
	}
}

// clientHost is the member's host as Kafka reports it ("/127.0.0.1").
func clientHost(r *Request) string {
	if r.Conn == nil {
		return ""
	}
	a := r.Conn.RemoteAddr()
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		host = a.String()
	}
	return "/" + host
}

// strOrEmpty reads a nullable string, null as "".
func strOrEmpty(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// strPtr returns a pointer to a copy of s.
func strPtr(s string) *string { return &s }
