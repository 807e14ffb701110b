package wire

// DescribeCluster (key 60), versions 0–1.
//
// Answers the cluster id, the controller and the brokers. Only the broker
// endpoint type is served (v1 EndpointType 1); controller endpoints
// (type 2) get UNSUPPORTED_ENDPOINT_TYPE.

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(60, 0, 1, handleDescribeCluster) }

func handleDescribeCluster(s *Server, r *Request) Reply {
	req := r.Body.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.EndpointType = 1
	resp.ClusterAuthorizedOperations = authorizedOpsNotRequested
	if req.Version >= 1 && req.EndpointType != 1 {
		resp.EndpointType = req.EndpointType
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		return Reply{Resp: resp}
	}
	meta := s.Broker.Meta()
	resp.ClusterID = meta.ClusterID()
	resp.ControllerID = meta.ControllerID()
	for _, b := range meta.Brokers() {
		mb := kmsg.NewDescribeClusterResponseBroker()
		mb.NodeID, mb.Host, mb.Port = b.ID, b.Host, b.Port
		if b.Rack != "" {
			rack := b.Rack
			mb.Rack = &rack
		}
		resp.Brokers = append(resp.Brokers, mb)
	}
	return Reply{Resp: resp}
}
