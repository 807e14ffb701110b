package wire

// DeleteTopics (key 20), versions 1–5.
//
// Deletes topics by name. The topic disappears from metadata at once; its
// partition logs are closed and removed, and a deletion interrupted by a
// crash completes at the next start. Internal topics cannot be deleted.
// Topic-id deletion (v6+) is not served yet.

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(20, 1, 5, handleDeleteTopics) }

func handleDeleteTopics(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	for _, name := range req.TopicNames {
		st := kmsg.NewDeleteTopicsResponseTopic()
		n := name
		st.Topic = &n
		t, err := s.Broker.DeleteTopic(name)
		if err != nil {
			st.ErrorCode = errCode(err)
			st.ErrorMessage = errMessage(err)
		} else {
			st.TopicID = t.ID
			s.Logger.Info("deleted topic", "topic", name, "client", r.Header.ClientID)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return Reply{Resp: resp}
}
