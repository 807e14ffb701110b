package wire

// ApiVersions: v0-4
//
// Behaviour:
//   - Answers with exactly the registered API keys and version ranges,
//     sorted by key, throttle 0, no features (none are finalized yet).
//   - A version outside 0-4 (e.g. a newer client's v5) is not decoded: the
//     connection answers in v0 format with UNSUPPORTED_VERSION (35) and the
//     full ranges, so the client retries at a version we serve (KIP-511). The
//     response header is always v0, even for flexible versions.
//   - v3+: the client software name and version are recorded on the Conn;
//     values Kafka would reject get INVALID_REQUEST (42), as Kafka answers.
//
// Version notes:
//   - v1: ThrottleMillis
//   - v3: ClientSoftwareName, ClientSoftwareVersion, flexible (request header v2)

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(apiVersionsKey, 0, 4, handleAPIVersions) }

func handleAPIVersions(_ *Server, r *Request) Reply {
	req := r.Body.(*kmsg.ApiVersionsRequest)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	if req.Version >= 3 {
		if !validSoftware(req.ClientSoftwareName) || !validSoftware(req.ClientSoftwareVersion) {
			resp.ErrorCode = kerr.InvalidRequest.Code
			return Reply{Resp: resp}
		}
		r.Conn.software.Store(&ClientSoftware{Name: req.ClientSoftwareName, Version: req.ClientSoftwareVersion})
	}
	resp.ApiKeys = slices.Clone(apiKeys())
	return Reply{Resp: resp}
}

// unsupportedAPIVersions is the v0 answer to an ApiVersions request whose
// version we do not serve.
func unsupportedAPIVersions() kmsg.Response {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	resp.ApiKeys = slices.Clone(apiKeys())
	return resp
}

// validSoftware reports whether s matches Kafka's pattern for client
// software names and versions: [a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?
func validSoftware(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case (c == '-' || c == '.') && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return s != ""
}
