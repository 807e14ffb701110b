package wire

// ListTransactions (key 66), version 0.
//
// Lists the transactional ids this broker coordinates, filtered by state
// (names as Kafka's: Empty, Ongoing, PrepareCommit, PrepareAbort,
// CompleteCommit, CompleteAbort, Dead, PrepareEpochFence; unknown names are
// echoed in UnknownStateFilters) and by producer id. Clients ask every
// broker and merge. While a coordinator here is loading, the answer is
// COORDINATOR_LOAD_IN_PROGRESS. v1's duration filter (KIP-994) is not served.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/txn"
)

func init() { register(66, 0, 0, handleListTransactions) }

func handleListTransactions(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.ListTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	var states []string
	for _, f := range req.StateFilters {
		if _, ok := txn.ParseState(f); ok {
			states = append(states, f)
		} else {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, f)
		}
	}
	if len(req.StateFilters) > 0 && len(states) == 0 {
		return Reply{Resp: resp}
	}
	for _, c := range s.Broker.TxnCoordinators() {
		if err := c.Err(); err != nil {
			// A coordinator still loading would list nothing: say so
			// (COORDINATOR_LOAD_IN_PROGRESS, retried) rather than
			// answer a partial list.
			resp.ErrorCode = errCode(err)
			resp.TransactionStates = nil
			return Reply{Resp: resp}
		}
		for _, l := range c.List(states, req.ProducerIDFilters) {
			st := kmsg.NewListTransactionsResponseTransactionState()
			st.TransactionalID, st.ProducerID, st.TransactionState = l.TransactionalID, l.ProducerID, l.State.String()
			resp.TransactionStates = append(resp.TransactionStates, st)
		}
	}
	return Reply{Resp: resp}
}
