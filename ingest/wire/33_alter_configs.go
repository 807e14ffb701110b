package wire

// AlterConfigs (key 33), versions 0–2.
//
// Replaces a topic's whole set of overrides with the ones given (configs
// not listed return to their defaults), after validating every value and
// the rules between them; validate_only checks without changing anything.
// Broker settings are static: broker resources get INVALID_REQUEST.

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(33, 0, 2, handleAlterConfigs) }

func handleAlterConfigs(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		err := alterConfigs(s, req.ValidateOnly, rr)
		if err != nil {
			sr.ErrorCode = errCode(err)
			sr.ErrorMessage = errMessage(err)
		} else if !req.ValidateOnly {
			s.Logger.Info("altered topic configs", "topic", rr.ResourceName, "client", r.Header.ClientID)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return Reply{Resp: resp}
}

func alterConfigs(s *Server, validateOnly bool, rr kmsg.AlterConfigsRequestResource) error {
	if rr.ResourceType != kmsg.ConfigResourceTypeTopic {
		return fmt.Errorf("%w: only topic configs can be altered; broker settings are static", kerr.InvalidRequest)
	}
	configs := map[string]string{}
	for _, c := range rr.Configs {
		if c.Value == nil {
			return fmt.Errorf("%w: configuration %s has a null value", kerr.InvalidConfig, c.Name)
		}
		configs[c.Name] = *c.Value
	}
	return s.Broker.SetTopicConfigs(rr.ResourceName, configs, validateOnly)
}
