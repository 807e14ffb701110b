package wire

// Helpers shared by the transaction APIs (keys 24–28, 65, 66).

import (
	"github.com/twmb/franz-go/pkg/kerr"
)

// fencedCode is errCode, except that PRODUCER_FENCED becomes
// INVALID_PRODUCER_EPOCH for request versions before since: clients of
// those versions do not know the newer code (KIP-588).
func fencedCode(err error, version, since int16) int16 {
	code := errCode(err)
	if code == kerr.ProducerFenced.Code && version < since {
		return kerr.InvalidProducerEpoch.Code
	}
	return code
}
