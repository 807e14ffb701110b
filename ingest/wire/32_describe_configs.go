package wire

// DescribeConfigs (key 32), versions 1–4.
//
// Topic resources list every topic config Strata knows (or the requested
// names) with the effective value, source TOPIC_CONFIG for overrides and
// DEFAULT_CONFIG otherwise, synonyms when asked (the override, then the
// default), the config type (v3+) and documentation when asked (v3+).
// Broker resources list the broker's static settings, read-only. Unknown
// topics get UNKNOWN_TOPIC_OR_PARTITION; unknown config names are left out,
// as Kafka does; other resource types get INVALID_REQUEST.

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/strata-io/strata/ingest/topicconfig"
)

func init() { register(32, 1, 4, handleDescribeConfigs) }

const (
	configSourceTopic   = int8(kmsg.ConfigSourceDynamicTopicConfig)
	configSourceDefault = int8(kmsg.ConfigSourceDefaultConfig)
)

func handleDescribeConfigs(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		var err error
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			sr.Configs, err = describeTopicConfigs(s, req, rr)
		case kmsg.ConfigResourceTypeBroker:
			sr.Configs, err = describeBrokerConfigs(s, req, rr)
		default:
			err = fmt.Errorf("%w: resource type %d is not supported", kerr.InvalidRequest, rr.ResourceType)
		}
		if err != nil {
			sr.ErrorCode = errCode(err)
			sr.ErrorMessage = errMessage(err)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return Reply{Resp: resp}
}

func wanted(names []string) func(string) bool {
	if names == nil {
		return func(string) bool { return true }
	}
	set := map[string]bool{}
	for _, n := range names {
		set[n] = true
	}
	return func(n string) bool { return set[n] }
}

func describeTopicConfigs(s *Server, req *kmsg.DescribeConfigsRequest, rr kmsg.DescribeConfigsRequestResource) ([]kmsg.DescribeConfigsResponseResourceConfig, error) {
	t, ok := s.Broker.Meta().Topic(rr.ResourceName)
	if !ok {
		return nil, fmt.Errorf("%w: topic %q", kerr.UnknownTopicOrPartition, rr.ResourceName)
	}
	want := wanted(rr.ConfigNames)
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, name := range topicconfig.Names() {
		if !want(name) {
			continue
		}
		def := topicconfig.Lookup(name)
		v, overridden := topicconfig.Value(t.Configs, name)
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = name
		c.Value = &v
		c.Source = kmsg.ConfigSourceDefaultConfig
		c.IsDefault = !overridden
		if overridden {
			c.Source = kmsg.ConfigSourceDynamicTopicConfig
		}
		c.ConfigType = kmsg.ConfigType(def.Type)
		if req.IncludeDocumentation {
			doc := def.Doc
			c.Documentation = &doc
		}
		if req.IncludeSynonyms {
			if overridden {
				syn := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
				syn.Name, syn.Value, syn.Source = name, &v, kmsg.ConfigSourceDynamicTopicConfig
				c.ConfigSynonyms = append(c.ConfigSynonyms, syn)
			}
			d := def.Default
			syn := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
			syn.Name, syn.Value, syn.Source = name, &d, kmsg.ConfigSourceDefaultConfig
			c.ConfigSynonyms = append(c.ConfigSynonyms, syn)
		}
		out = append(out, c)
	}
	return out, nil
}

func describeBrokerConfigs(s *Server, req *kmsg.DescribeConfigsRequest, rr kmsg.DescribeConfigsRequestResource) ([]kmsg.DescribeConfigsResponseResourceConfig, error) {
	if rr.ResourceName != "" && rr.ResourceName != strconv.Itoa(int(s.Broker.NodeID())) {
		return nil, fmt.Errorf("%w: broker %q is not this broker (%d)", kerr.InvalidRequest, rr.ResourceName, s.Broker.NodeID())
	}
	settings := s.Broker.StaticConfigs()
	names := make([]string, 0, len(settings))
	for n := range settings {
		names = append(names, n)
	}
	sort.Strings(names)
	want := wanted(rr.ConfigNames)
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, n := range names {
		if !want(n) {
			continue
		}
		v := settings[n]
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.Value, c.ReadOnly = n, &v, true
		c.Source = kmsg.ConfigSourceStaticBrokerConfig
		c.ConfigType = kmsg.ConfigTypeString
		out = append(out, c)
	}
	return out, nil
}
