package wire

// IncrementalAlterConfigs (key 44), versions 0–1.
//
// Applies SET, DELETE (back to the default), APPEND and SUBTRACT (list
// configs such as cleanup.policy) to a topic's overrides, validates the
// result as a whole and stores it in one step; validate_only checks without
// changing anything. Broker settings are static: INVALID_REQUEST.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/topicconfig"
)

func init() { register(44, 0, 1, handleIncrementalAlterConfigs) }

func handleIncrementalAlterConfigs(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		if err := incrementalAlter(s, req.ValidateOnly, rr); err != nil {
			sr.ErrorCode = errCode(err)
			sr.ErrorMessage = errMessage(err)
		} else if !req.ValidateOnly {
			s.Logger.Info("altered topic configs", "topic", rr.ResourceName, "client", r.Header.ClientID)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return Reply{Resp: resp}
}

func incrementalAlter(s *Server, validateOnly bool, rr kmsg.IncrementalAlterConfigsRequestResource) error {
	if rr.ResourceType != kmsg.ConfigResourceTypeTopic {
		return fmt.Errorf("%w: only topic configs can be altered; broker settings are static", kerr.InvalidRequest)
	}
	t, ok := s.Broker.Meta().Topic(rr.ResourceName)
	if !ok {
		return fmt.Errorf("%w: topic %q", kerr.UnknownTopicOrPartition, rr.ResourceName)
	}
	configs := map[string]string{}
	for k, v := range t.Configs {
		configs[k] = v
	}
	for _, c := range rr.Configs {
		def := topicconfig.Lookup(c.Name)
		if def == nil {
			return fmt.Errorf("%w: unknown topic configuration %s", kerr.InvalidConfig, c.Name)
		}
		val := ""
		if c.Value != nil {
			val = *c.Value
		}
		switch c.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			if c.Value == nil {
				return fmt.Errorf("%w: SET of %s needs a value", kerr.InvalidConfig, c.Name)
			}
			configs[c.Name] = val
		case kmsg.IncrementalAlterConfigOpDelete:
			delete(configs, c.Name)
		case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
			if def.Type != topicconfig.TypeList {
				return fmt.Errorf("%w: APPEND and SUBTRACT apply only to list configs, not %s", kerr.InvalidConfig, c.Name)
			}
			cur, _ := topicconfig.Value(configs, c.Name)
			items := splitList(cur)
			for _, v := range splitList(val) {
				i := slices.Index(items, v)
				if c.Op == kmsg.IncrementalAlterConfigOpAppend && i < 0 {
					items = append(items, v)
				} else if c.Op == kmsg.IncrementalAlterConfigOpSubtract && i >= 0 {
					items = slices.Delete(items, i, i+1)
				}
			}
			configs[c.Name] = strings.Join(items, ",")
		default:
			return fmt.Errorf("%w: unknown operation %d for %s", kerr.InvalidRequest, c.Op, c.Name)
		}
	}
	return s.Broker.SetTopicConfigs(rr.ResourceName, configs, validateOnly)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
