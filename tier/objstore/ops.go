package objstore

// Op names a Store operation, for wrappers that count or inject faults per
// operation.
type Op int

// The Store operations.
const (
	OpPut Op = iota
	OpPutIfAbsent
	OpGet
	OpGetRange
	OpStat
	OpList
	OpDelete
	numOps
)

// Ops lists every Op, in order.
var Ops = []Op{OpPut, OpPutIfAbsent, OpGet, OpGetRange, OpStat, OpList, OpDelete}

var opNames = [numOps]string{"put", "put-if-absent", "get", "get-range", "stat", "list", "delete"}

// String returns the operation's lower-case name, e.g. "get-range".
func (o Op) String() string {
	if o < 0 || o >= numOps {
		return "unknown"
	}
	return opNames[o]
}
