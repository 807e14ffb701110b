package group

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestAppendError(t *testing.T) {
	for _, tt := range []struct {
		in            error
		group, commit error
	}{
		{kerr.UnknownTopicOrPartition, kerr.CoordinatorNotAvailable, kerr.CoordinatorNotAvailable},
		{kerr.NotEnoughReplicas, kerr.CoordinatorNotAvailable, kerr.CoordinatorNotAvailable},
		{kerr.NotLeaderForPartition, kerr.NotCoordinator, kerr.NotCoordinator},
		{kerr.KafkaStorageError, kerr.NotCoordinator, kerr.NotCoordinator},
		{kerr.RequestTimedOut, kerr.RebalanceInProgress, kerr.CoordinatorNotAvailable},
		{kerr.MessageTooLarge, kerr.UnknownServerError, kerr.InvalidCommitOffsetSize},
		{kerr.RecordListTooLarge, kerr.UnknownServerError, kerr.InvalidCommitOffsetSize},
		{kerr.InvalidRecord, kerr.InvalidRecord, kerr.InvalidRecord},
		{errors.New("disk on fire"), kerr.CoordinatorNotAvailable, kerr.CoordinatorNotAvailable},
	} {
		if got := appendError(tt.in, false); got != tt.group {
			t.Errorf("group store %v -> %v, want %v", tt.in, got, tt.group)
		}
		if got := appendError(tt.in, true); got != tt.commit {
			t.Errorf("commit %v -> %v, want %v", tt.in, got, tt.commit)
		}
	}
}

func TestStateNames(t *testing.T) {
	for s := Empty; s <= Dead; s++ {
		if p, ok := ParseState(s.String()); !ok || p != s {
			t.Errorf("%v does not round-trip", s)
		}
	}
	if _, ok := ParseState("Stabl"); ok {
		t.Error("parsed a bad name")
	}
}

func TestStaticReplacementPersistFailureReverts(t *testing.T) {
	e := newEnv(t)
	a := joinReq("g", "", "a")
	a.InstanceID = "ia"
	ra := ready(t, e.c.Join(a))
	gen := e.syncAll("g", []string{ra.MemberID}, ra.Generation)
	e.log.fail = kerr.NotEnoughReplicas
	r := ready(t, e.c.Join(a))
	wantErr(t, "replacement", r.Err, kerr.CoordinatorNotAvailable)
	e.log.fail = nil
	// The old incarnation still owns the instance.
	wantErr(t, "old heartbeat", e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: ra.MemberID, InstanceID: "ia", Generation: gen}), nil)
	wantErr(t, "new heartbeat", e.c.Heartbeat(HeartbeatRequest{Group: "g", MemberID: r.MemberID, InstanceID: "ia", Generation: gen}), kerr.FencedInstanceID)
}
