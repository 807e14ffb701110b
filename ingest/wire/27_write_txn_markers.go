package wire

// WriteTxnMarkers (key 27), versions 0–1.
//
// Transaction coordinators on other brokers send the commit or abort
// markers of a transaction to the leaders of its partitions with this
// request; operators send it to abort a hanging transaction (Kafka's
// kafka-transactions.sh abort, `strata txn abort`). Each marker is appended
// to the partition (which must be led here: NOT_LEADER_OR_FOLLOWER
// otherwise) and answered once it is below the high watermark. Markers of
// an older producer epoch get INVALID_PRODUCER_EPOCH, of an older
// coordinator epoch TRANSACTION_COORDINATOR_FENCED.

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/batch"
)

func init() { register(27, 0, 1, handleWriteTxnMarkers) }

// maxMarkerWrites bounds the markers of one request written at once.
const maxMarkerWrites = 32

func handleWriteTxnMarkers(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.WriteTxnMarkersRequest)
	resp := req.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
	for _, m := range req.Markers {
		rm := kmsg.NewWriteTxnMarkersResponseMarker()
		rm.ProducerID = m.ProducerID
		for _, t := range m.Topics {
			rt := kmsg.NewWriteTxnMarkersResponseMarkerTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
				rp.Partition = p
				rt.Partitions = append(rt.Partitions, rp)
			}
			rm.Topics = append(rm.Topics, rt)
		}
		resp.Markers = append(resp.Markers, rm)
	}
	return Reply{Wait: func() kmsg.Response {
		var wg sync.WaitGroup
		sem := make(chan struct{}, maxMarkerWrites)
		for mi, m := range req.Markers {
			mk := batch.Marker{Commit: m.Committed, CoordinatorEpoch: m.CoordinatorEpoch}
			for ti, t := range m.Topics {
				for pi, p := range t.Partitions {
					wg.Add(1)
					sem <- struct{}{}
					go func() {
						defer func() { <-sem; wg.Done() }()
						err := s.Broker.WriteTxnMarker(r.Ctx, t.Topic, p, m.ProducerID, m.ProducerEpoch, mk)
						if err != nil {
							s.Logger.Warn("transaction marker not written", "topic", t.Topic, "partition", p,
								"producer_id", m.ProducerID, "producer_epoch", m.ProducerEpoch, "commit", m.Committed, "err", err)
						}
						resp.Markers[mi].Topics[ti].Partitions[pi].ErrorCode = errCode(err)
					}()
				}
			}
		}
		wg.Wait()
		if r.Ctx.Err() != nil {
			return nil
		}
		return resp
	}}
}
