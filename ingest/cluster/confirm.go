package cluster

// Leadership confirmation: before a partition leader deletes anything in
// the object store it asks the quorum whether it still leads at its epoch
// ("deletions happen only on a leader whose epoch the quorum confirms").
// Only the controller answers, from its applied state, and only while a
// majority of the voters still follows it, so a deposed controller that
// has not noticed yet cannot confirm a leadership it no longer knows to be
// stale. It is a read: nothing is appended to the log for it, except one
// barrier per controller term (catchUpTerm).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// ConfirmLeader returns nil when the controller confirms that this broker,
// at its current broker epoch and unfenced, leads the partition at exactly
// leaderEpoch. Every other answer is an error wrapping ErrNotConfirmed: the
// quorum says otherwise (a topic or partition gone wraps
// ErrUnknownTopicPartition too, a stale broker epoch ErrStaleBrokerEpoch),
// or no controller answered within ctx and the request timeout (the error
// wraps the context's error or ErrNotController). Callers must treat any
// error as "not confirmed". Requests from other brokers are forwarded to
// the controller. It blocks on the quorum: never call it from a Watch
// callback (the state machine's goroutine), which would wait for itself.
func (q *Raft) ConfirmLeader(ctx context.Context, topic TopicID, partition int32, leaderEpoch int32) error {
	ctx, cancel := context.WithTimeout(ctx, q.cfg.RequestTimeout)
	defer cancel()
	epoch := q.epoch.Load()
	if epoch == 0 {
		return fmt.Errorf("%w: this broker is not registered", ErrNotConfirmed)
	}
	t := topic
	_, err := q.doCtx(ctx, ctlRequest{Op: opConfirmLeader, BrokerID: q.cfg.Self.ID, Epoch: epoch, TopicID: &t, Partition: partition, LeaderEpoch: leaderEpoch})
	if err != nil && !errors.Is(err, ErrNotConfirmed) {
		err = fmt.Errorf("%w: %w", ErrNotConfirmed, err)
	}
	return err
}

// confirmLeader serves opConfirmLeader on the controller.
func (q *Raft) confirmLeader(ctx context.Context, req ctlRequest) ctlResponse {
	if req.TopicID == nil {
		return errResponse(fmt.Errorf("%w: confirm_leader without a topic", ErrUnsupportedCommand))
	}
	ctx, cancel := context.WithTimeout(ctx, q.cfg.RequestTimeout)
	defer cancel()
	// Everything committed before this term must be in the state read.
	if err := q.catchUpTerm(ctx); err != nil {
		return errResponse(err)
	}
	q.fsm.mu.RLock()
	err := q.fsm.st.ConfirmLeader(req.BrokerID, req.Epoch, *req.TopicID, req.Partition, req.LeaderEpoch)
	q.fsm.mu.RUnlock()
	if err != nil {
		return errResponse(err)
	}
	// Still the controller after reading: a majority answered this term
	// after the state was read, so no other controller has changed it
	// since.
	if err := waitFuture(ctx, q.r.VerifyLeader()); err != nil {
		return errResponse(err)
	}
	return ctlResponse{}
}

// catchUpTerm makes sure that this controller's state machine has applied
// everything committed before its term: one barrier per term. Writes of
// the term itself are applied before they are answered (propose), so any
// write that finished before a confirmation began is in the state it
// reads.
func (q *Raft) catchUpTerm(ctx context.Context) error {
	term := q.r.CurrentTerm()
	if q.caughtUpTerm.Load() == term {
		return nil
	}
	if err := waitFuture(ctx, q.r.Barrier(time.Until(deadlineOf(ctx)))); err != nil {
		return err
	}
	if q.r.CurrentTerm() == term && q.r.State() == raft.Leader {
		q.caughtUpTerm.Store(term)
	}
	return nil
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// waitFuture waits for a raft future within ctx.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrNotController, ctx.Err())
	}
}
