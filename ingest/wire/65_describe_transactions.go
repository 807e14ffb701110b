package wire

// DescribeTransactions (key 65), version 0.
//
// Each transactional id is described by its coordinator: state, timeout,
// start time, producer id and epoch, and the partitions of the open
// transaction. Ids another broker coordinates get NOT_COORDINATOR (clients
// look the coordinator up per id); unknown ids TRANSACTIONAL_ID_NOT_FOUND.

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(65, 0, 0, handleDescribeTransactions) }

func handleDescribeTransactions(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.DescribeTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	for _, id := range req.TransactionalIDs {
		st := kmsg.NewDescribeTransactionsResponseTransactionState()
		st.TransactionalID = id
		st.ProducerID, st.ProducerEpoch = -1, -1
		c, err := s.Broker.TxnCoordinator(id)
		if err != nil {
			st.ErrorCode = errCode(err)
			resp.TransactionStates = append(resp.TransactionStates, st)
			continue
		}
		d := c.Describe([]string{id})[0]
		if d.Err != nil {
			st.ErrorCode = errCode(d.Err)
			resp.TransactionStates = append(resp.TransactionStates, st)
			continue
		}
		st.State, st.TimeoutMillis, st.StartTimestamp = d.State.String(), d.TimeoutMs, d.StartMs
		st.ProducerID, st.ProducerEpoch = d.ProducerID, d.ProducerEpoch
		byTopic := map[string]int{}
		for _, tp := range d.Partitions {
			i, ok := byTopic[tp.Topic]
			if !ok {
				i = len(st.Topics)
				byTopic[tp.Topic] = i
				t := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
				t.Topic = tp.Topic
				st.Topics = append(st.Topics, t)
			}
			st.Topics[i].Partitions = append(st.Topics[i].Partitions, tp.Partition)
		}
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return Reply{Resp: resp}
}
