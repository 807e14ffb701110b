package producer

import "fmt"

// Kafka error codes returned by State.Check.
const (
	CodeOutOfOrderSequence   int16 = 45 // OUT_OF_ORDER_SEQUENCE_NUMBER
	CodeInvalidProducerEpoch int16 = 47 // INVALID_PRODUCER_EPOCH
	CodeInvalidRecord        int16 = 87 // INVALID_RECORD
	// CodeTransactionCoordinatorFenced is TRANSACTION_COORDINATOR_FENCED,
	// returned by CheckMarker.
	CodeTransactionCoordinatorFenced int16 = 52
)

// Error is a refusal of a batch by State.Check. Code is the Kafka error code
// to answer the produce request with.
type Error struct {
	code int16
	msg  string
}

// Sentinel errors for errors.Is; errors returned by Check match the sentinel
// with the same code and carry details about the producer.
var (
	ErrOutOfOrderSequence   = &Error{CodeOutOfOrderSequence, "out of order sequence number"}
	ErrInvalidProducerEpoch = &Error{CodeInvalidProducerEpoch, "invalid producer epoch"}
	ErrInvalidRecord        = &Error{CodeInvalidRecord, "invalid record"}
	// ErrTransactionCoordinatorFenced refuses a marker written by a
	// coordinator older than the one that wrote the producer's last marker.
	ErrTransactionCoordinatorFenced = &Error{CodeTransactionCoordinatorFenced, "transaction coordinator fenced"}
)

func (e *Error) Error() string { return e.msg }

// Code is the Kafka error code for the refusal.
func (e *Error) Code() int16 { return e.code }

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, ErrOutOfOrderSequence) holds for every out-of-order refusal.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.code == e.code
}

func errorf(base *Error, format string, args ...any) *Error {
	return &Error{code: base.code, msg: base.msg + ": " + fmt.Sprintf(format, args...)}
}
