package wire

// Fetch (key 1), versions 4–12.
//
// Returns whole batches below the high watermark (the durable offset), or
// for read_committed (isolation level 1) below the last stable offset with
// the aborted transactions of the returned range (from the local log's
// index, or from the segment footers for history in the bucket),
// starting with the batch that holds the fetch offset. The response is
// bounded by max.bytes and each partition by its partition max bytes, except
// that the first partition with data always returns at least one batch
// (KIP-74) so an oversized batch cannot stall a consumer. When fewer than
// min.bytes are available the request waits, up to max.wait.ms, for new
// durable data on any of its partitions (long polling) without holding the
// connection's reader. Fetch sessions (KIP-227) are declined: the response
// carries session id 0, which tells clients to keep sending full requests;
// an incremental request naming a session gets FETCH_SESSION_ID_NOT_FOUND.
// Leader epochs in requests (v9+) are checked: older epochs get
// FENCED_LEADER_EPOCH, newer ones UNKNOWN_LEADER_EPOCH. Offsets below the
// local log start of a tiered topic are read from the bucket (footer, then a
// ranged GET of the chunk that holds them) on the request's own goroutine,
// so cold reads never hold up the connection's other requests or produce.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/broker"
)

func init() { register(1, 4, 12, handleFetch) }

func handleFetch(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.FetchRequest)
	if req.SessionID != 0 {
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return Reply{Resp: resp}
	}
	// A first pass serves what is on local disk without blocking; offsets
	// only in the bucket make the whole request wait on its own goroutine.
	resp, n, done, remote := buildFetch(s, r.Ctx, req, false)
	if !remote && (done || req.MaxWaitMillis <= 0 || n >= int(req.MinBytes)) {
		return Reply{Resp: resp}
	}
	return Reply{Wait: func() kmsg.Response {
		if remote {
			resp, n, done, _ = buildFetch(s, r.Ctx, req, true)
			if done || req.MaxWaitMillis <= 0 || n >= int(req.MinBytes) {
				return resp
			}
		}
		w := broker.NewWaiter()
		var parts []*broker.Partition
		for _, t := range req.Topics {
			for _, fp := range t.Partitions {
				if p, err := s.Broker.Partition(t.Topic, fp.Partition); err == nil {
					p.AddWaiter(w)
					parts = append(parts, p)
				}
			}
		}
		defer func() {
			for _, p := range parts {
				p.RemoveWaiter(w)
			}
		}()
		timer := time.NewTimer(time.Duration(req.MaxWaitMillis) * time.Millisecond)
		defer timer.Stop()
		for {
			select {
			case <-w.C:
				resp, n, done, _ = buildFetch(s, r.Ctx, req, true)
				if done || n >= int(req.MinBytes) {
					return resp
				}
			case <-timer.C:
				resp, _, _, _ = buildFetch(s, r.Ctx, req, true)
				return resp
			case <-r.Ctx.Done():
				return resp
			}
		}
	}}
}

// buildFetch reads every requested partition. It returns the response, the
// record bytes in it, whether an error should end a long poll early, and
// whether a partition needed a remote read that remote did not allow.
func buildFetch(s *Server, ctx context.Context, req *kmsg.FetchRequest, remote bool) (*kmsg.FetchResponse, int, bool, bool) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	budget := int(req.MaxBytes)
	if req.Version < 3 || budget <= 0 {
		budget = 1<<31 - 1
	}
	total := 0
	hasErr, needRemote := false, false
	var cold map[[2]int]coldRead
	if remote && req.ReplicaID < 0 {
		cold = readCold(s, ctx, req)
	}
	for ti, t := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic = t.Topic
		for pi, fp := range t.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = fp.Partition
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			// Never null: librdkafka refuses a null record set.
			sp.RecordBatches = []byte{}
			pre, hasPre := cold[[2]int{ti, pi}]
			data, err := fetchOne(s, ctx, req, t.Topic, fp, &sp, budget-total, total == 0, remote, pre, hasPre)
			if errors.Is(err, broker.ErrRemoteRead) {
				needRemote = true
			} else if err != nil {
				sp.ErrorCode = errCode(err)
				hasErr = true
			} else if len(data) > 0 {
				sp.RecordBatches = data
				total += len(data)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, total, hasErr, needRemote
}

// coldRead is a remote read done ahead of assembling the response.
type coldRead struct {
	data []byte
	err  error
}

// maxColdReads bounds the partitions of one Fetch read from the bucket at
// once (the tier's reader pool bounds object requests across all fetches).
const maxColdReads = 8

// readCold reads, concurrently, every partition of the request whose fetch
// offset lies below its local log start, so one Fetch serves several cold
// partitions at once. Results are keyed by (topic, partition) index.
func readCold(s *Server, ctx context.Context, req *kmsg.FetchRequest) map[[2]int]coldRead {
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out = map[[2]int]coldRead{}
		sem = make(chan struct{}, maxColdReads)
	)
	for ti, t := range req.Topics {
		for pi, fp := range t.Partitions {
			p, err := s.Broker.Partition(t.Topic, fp.Partition)
			if err != nil || p.Tier() == nil || fp.FetchOffset >= p.LocalStartOffset() || fp.FetchOffset < p.LogStartOffset() {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				data, err := p.ReadIsolated(ctx, fp.FetchOffset, int(fp.PartitionMaxBytes), true, req.IsolationLevel == 1)
				mu.Lock()
				out[[2]int{ti, pi}] = coldRead{data, err}
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return out
}

// trimBatches cuts data (whole batches) to at most limit bytes on a batch
// boundary; with first it keeps at least one batch.
func trimBatches(data []byte, limit int, first bool) []byte {
	n := 0
	for n < len(data) {
		h, err := batch.ParseHeader(data[n:])
		if err != nil || n+h.Size() > len(data) {
			break
		}
		if n+h.Size() > limit && !(first && n == 0) {
			break
		}
		n += h.Size()
	}
	return data[:n]
}

func fetchOne(s *Server, ctx context.Context, req *kmsg.FetchRequest, topic string, fp kmsg.FetchRequestTopicPartition, sp *kmsg.FetchResponseTopicPartition, budget int, first, remote bool, pre coldRead, hasPre bool) ([]byte, error) {
	p, err := s.Broker.Partition(topic, fp.Partition)
	if err != nil {
		return nil, err
	}
	if err := checkLeaderEpoch(p, fp.CurrentLeaderEpoch); err != nil {
		return nil, err
	}
	follower := req.ReplicaID >= 0
	if follower {
		// A follower's fetch offset says what it holds: it may advance
		// the high watermark reported below.
		if err := p.FollowerFetch(req.ReplicaID, fp.FetchOffset); err != nil {
			return nil, err
		}
	}
	sp.HighWatermark = p.HighWatermark()
	sp.LastStableOffset = p.LastStableOffset()
	sp.LogStartOffset = p.LogStartOffset()
	if req.IsolationLevel == 1 {
		sp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
	}
	limit := int(fp.PartitionMaxBytes)
	if limit > budget {
		limit = budget
	}
	if limit <= 0 && !first {
		return nil, nil
	}
	var data []byte
	switch {
	case follower:
		data, err = p.ReadForFollower(fp.FetchOffset, limit)
	case hasPre:
		data, err = trimBatches(pre.data, limit, first), pre.err
	default:
		data, err = p.ReadIsolated(ctx, fp.FetchOffset, limit, remote, req.IsolationLevel == 1)
	}
	if err != nil {
		return nil, err
	}
	if len(data) > limit && !first {
		// Only the response's first partition may exceed the limits; the
		// client fetches this batch again, first, next time.
		return nil, nil
	}
	if req.IsolationLevel == 1 && !follower && len(data) > 0 {
		aborted, err := p.AbortedTxns(ctx, fp.FetchOffset, nextOffset(data))
		if err != nil {
			return nil, err
		}
		for _, a := range aborted {
			at := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
			at.ProducerID, at.FirstOffset = a.ProducerID, a.FirstOffset
			sp.AbortedTransactions = append(sp.AbortedTransactions, at)
		}
	}
	return data, nil
}

// nextOffset is the offset after the last whole batch of data.
func nextOffset(data []byte) int64 {
	next := int64(-1)
	for len(data) > 0 {
		h, err := batch.ParseHeader(data)
		if err != nil || h.Size() > len(data) {
			break
		}
		next = h.LastOffset() + 1
		data = data[h.Size():]
	}
	return next
}

// checkLeaderEpoch applies KIP-320's fencing of requests that carry a
// leader epoch (-1 means none).
func checkLeaderEpoch(p *broker.Partition, epoch int32) error {
	switch cur := p.LeaderEpoch(); {
	case epoch == -1 || epoch == cur:
		return nil
	case epoch < cur:
		return kerr.FencedLeaderEpoch
	default:
		return kerr.UnknownLeaderEpoch
	}
}
