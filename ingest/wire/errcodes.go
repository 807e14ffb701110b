package wire

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/strata-io/strata/ingest/broker"
	"github.com/strata-io/strata/ingest/cluster"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/ingest/topicconfig"
)

// errCode maps an error from the broker or below to a Kafka error code.
// Errors that carry their own code (batch validation, producer state) win.
func errCode(err error) int16 {
	if err == nil {
		return 0
	}
	var coded interface{ Code() int16 }
	if errors.As(err, &coded) {
		return coded.Code()
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	var cfgErr *topicconfig.Error
	switch {
	case errors.As(err, &cfgErr):
		return kerr.InvalidConfig.Code
	case errors.Is(err, broker.ErrUnknownTopicOrPartition), errors.Is(err, cluster.ErrUnknownTopic),
		errors.Is(err, plog.ErrClosed): // a partition closed under the request: its topic was deleted
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, plog.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	case errors.Is(err, plog.ErrStorage), errors.Is(err, plog.ErrDiskFull), errors.Is(err, broker.ErrRemoteStorage):
		return kerr.KafkaStorageError.Code
	case errors.Is(err, broker.ErrInvalidTopic), errors.Is(err, broker.ErrInternalTopic):
		return kerr.InvalidTopicException.Code
	case errors.Is(err, broker.ErrInvalidPartitions), errors.Is(err, cluster.ErrInvalidPartition):
		return kerr.InvalidPartitions.Code
	case errors.Is(err, broker.ErrInvalidReplication), errors.Is(err, cluster.ErrInvalidReplication):
		return kerr.InvalidReplicationFactor.Code
	case errors.Is(err, broker.ErrNotEnoughReplicasAfterAppend):
		return kerr.NotEnoughReplicasAfterAppend.Code
	case errors.Is(err, broker.ErrNotEnoughReplicas):
		return kerr.NotEnoughReplicas.Code
	case errors.Is(err, broker.ErrNotLeader):
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, broker.ErrLeaderNotAvailable):
		return kerr.LeaderNotAvailable.Code
	case errors.Is(err, cluster.ErrNotController):
		return kerr.NotController.Code
	case errors.Is(err, broker.ErrTopicExists):
		return kerr.TopicAlreadyExists.Code
	case errors.Is(err, context.DeadlineExceeded):
		return kerr.RequestTimedOut.Code
	}
	return kerr.UnknownServerError.Code
}

// errMessage returns a message for responses that carry one, nil for no error.
func errMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}
