package wire

// Produce (key 0), versions 3–11.
//
// Each partition's records are validated (magic 2, CRC-32C, sizes, record
// counts, timestamps), recompressed when the topic's compression.type asks
// for it, stamped for LogAppendTime, checked against the idempotent producer
// state and appended, in request order, on the connection's reader. acks=1
// answers once written; acks=-1 answers once every partition's records are
// durable (group commit), or REQUEST_TIMED_OUT after timeout.ms; acks=0
// answers nothing and closes the connection if any partition failed, as
// Kafka does, so the producer notices. Transactional batches need the
// request's transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED
// otherwise); the producer's epoch fences zombies (INVALID_PRODUCER_EPOCH)
// once the transaction coordinator bumped it. Internal topics (__consumer_offsets, written only by
// the group coordinator) get INVALID_TOPIC_EXCEPTION. Versions below 3
// carry message sets v0/v1, which Kafka 4 refuses too.

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/broker"
)

func init() { register(0, 3, 11, handleProduce) }

type durableWait struct {
	p    *broker.Partition
	last int64
	rp   *kmsg.ProduceResponseTopicPartition
}

func handleProduce(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	// Non-zero while the data disk is nearly full (see docs/operations.md).
	resp.ThrottleMillis = s.Broker.ProduceThrottleMs()
	var waits []durableWait
	failed := false
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		for i, rp := range rt.Partitions {
			sp := &st.Partitions[i]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset, sp.LogAppendTime, sp.LogStartOffset = -1, -1, -1
			p, last, err := produceOne(s, req, rt.Topic, rp, sp)
			if err != nil {
				failed = true
				sp.ErrorCode = errCode(err)
				sp.ErrorMessage = errMessage(err)
				s.Logger.Debug("produce refused", "topic", rt.Topic, "partition", rp.Partition, "code", sp.ErrorCode, "err", err, "client", r.Header.ClientID)
				continue
			}
			if req.Acks == -1 {
				waits = append(waits, durableWait{p: p, last: last, rp: sp})
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	if req.Acks == 0 {
		return Reply{Close: failed}
	}
	if len(waits) == 0 {
		return Reply{Resp: resp}
	}
	return Reply{Wait: func() kmsg.Response {
		timeout := time.Duration(req.TimeoutMillis) * time.Millisecond
		if timeout <= 0 {
			timeout = 30 * time.Second
		}
		ctx, cancel := context.WithTimeout(r.Ctx, timeout)
		defer cancel()
		for _, w := range waits {
			if err := w.p.WaitDurable(ctx, w.last); err != nil {
				w.rp.ErrorCode = errCode(err)
				w.rp.ErrorMessage = errMessage(err)
			}
		}
		return resp
	}}
}

// produceOne appends one partition's records and fills sp; it returns the
// partition and the offset of the last appended record.
func produceOne(s *Server, req *kmsg.ProduceRequest, topic string, rp kmsg.ProduceRequestTopicPartition, sp *kmsg.ProduceResponseTopicPartition) (*broker.Partition, int64, error) {
	if req.TransactionID == nil && transactional(rp.Records) {
		// Kafka's rule: transactional batches come with the producer's
		// transactional id.
		return nil, 0, kerr.TransactionalIDAuthorizationFailed
	}
	if broker.IsInternal(topic) { // only the group coordinator writes __consumer_offsets
		return nil, 0, fmt.Errorf("%w: cannot append to internal topic %s", broker.ErrInternalTopic, topic)
	}
	p, err := s.Broker.Partition(topic, rp.Partition)
	if err != nil {
		return nil, 0, err
	}
	if req.Acks == -1 {
		if err := p.CheckMinISR(); err != nil {
			return nil, 0, err
		}
	}
	res, err := p.Produce(rp.Records, req.Version >= 7)
	if err != nil {
		return nil, 0, err
	}
	sp.BaseOffset = res.BaseOffset
	sp.LogAppendTime = res.LogAppendTime
	sp.LogStartOffset = res.LogStartOffset
	return p, res.LastOffset, nil
}

// transactional reports whether records' first batch is transactional
// (Validate refuses requests that mix batches of several producers).
func transactional(records []byte) bool {
	h, err := batch.ParseHeader(records)
	return err == nil && h.IsTransactional()
}
