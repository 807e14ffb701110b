package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// HandlerFunc serves one decoded request. It is called on the connection's
// reader goroutine, serially and in arrival order, so it must not block:
// anything slow (waiting for durability, a fetch long poll) goes into
// Reply.Wait. r.Body may alias the request frame, whose bytes count against
// the in-flight budget only until the response is written: anything kept
// longer (a cache, a log buffer) must be copied, or it goes unaccounted.
type HandlerFunc func(s *Server, r *Request) Reply

// Reply is what a handler returns.
//
//   - Resp set, Wait nil: Resp is written in request order.
//   - Wait set: Wait is called on its own goroutine; the response it returns
//     is written in request order (nil writes nothing). Wait must return
//     promptly once the Request's Ctx is done.
//   - Resp and Wait nil: nothing is written (Produce with acks=0).
//
// Close closes the connection after writing the response, or instead of
// writing one when there is none. The version of the written response is
// forced to the request's version.
type Reply struct {
	Resp  kmsg.Response
	Wait  func() kmsg.Response
	Close bool
}

// RequestHeader is the Kafka request header (v1, or v2 for flexible
// versions; tagged header fields are skipped).
type RequestHeader struct {
	Key           int16
	Version       int16
	CorrelationID int32
	// ClientID is the header's client id; null is read as "", as Kafka does.
	ClientID string
}

// Request is one decoded request.
type Request struct {
	// Conn is the connection the request arrived on.
	Conn *Conn
	// Header is the decoded request header.
	Header RequestHeader
	// Body is the decoded request, with its version set. It may alias the
	// request's frame buffer (byte fields such as record batches do).
	Body kmsg.Request
	// Ctx is cancelled when the connection closes or the server stops.
	Ctx context.Context
}

// handlerEntry is one registered API key.
type handlerEntry struct {
	min, max int16
	h        HandlerFunc
}

// handlers maps an API key to its handler. It is written only by register,
// from init functions, and read without locking afterwards.
var handlers = map[int16]handlerEntry{}

// register adds the handler for an API key and the version range it serves;
// the range is what ApiVersions advertises. It must only be called from an
// init function. It panics on a programming error: a duplicate key, a key
// kmsg does not know, an empty or negative range, or a max version above
// what kmsg can decode.
func register(key int16, minVersion, maxVersion int16, h HandlerFunc) {
	req := kmsg.RequestForKey(key)
	switch {
	case req == nil:
		panic(fmt.Sprintf("wire: register unknown api key %d", key))
	case h == nil:
		panic(fmt.Sprintf("wire: register api key %d with nil handler", key))
	case minVersion < 0 || maxVersion < minVersion:
		panic(fmt.Sprintf("wire: register api key %d with invalid range %d-%d", key, minVersion, maxVersion))
	case maxVersion > req.MaxVersion():
		panic(fmt.Sprintf("wire: register api key %d up to v%d, kmsg decodes up to v%d", key, maxVersion, req.MaxVersion()))
	}
	if _, dup := handlers[key]; dup {
		panic(fmt.Sprintf("wire: api key %d registered twice", key))
	}
	handlers[key] = handlerEntry{min: minVersion, max: maxVersion, h: h}
}

// apiKeys is the registered keys and version ranges sorted by key, built
// once on first use (after every init has run). Callers must not modify it.
var apiKeys = sync.OnceValue(func() []kmsg.ApiVersionsResponseApiKey {
	keys := make([]kmsg.ApiVersionsResponseApiKey, 0, len(handlers))
	for key, e := range handlers {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = key, e.min, e.max
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b kmsg.ApiVersionsResponseApiKey) int { return int(a.ApiKey) - int(b.ApiKey) })
	return keys
})

var (
	// errShortHeader: the frame cannot hold a request header.
	errShortHeader = errors.New("request header truncated")
)

// versionError reports an API key that is not registered or a version
// outside the registered range.
type versionError struct {
	key, version int16
	known        bool
}

func (e *versionError) Error() string {
	if !e.known {
		return fmt.Sprintf("unsupported api key %d (version %d)", e.key, e.version)
	}
	return fmt.Sprintf("unsupported %s version %d", kmsg.NameForKey(e.key), e.version)
}

// parseRequest decodes one request frame (without its 4-byte size prefix):
// the header, then the body with kmsg at the header's version. The returned
// header holds as much as was decoded before an error, so a versionError
// still carries the correlation id. It never panics on any input, and the
// decoded body may alias frame.
func parseRequest(frame []byte) (RequestHeader, kmsg.Request, HandlerFunc, error) {
	var hdr RequestHeader
	if len(frame) < 8 {
		return hdr, nil, nil, errShortHeader
	}
	hdr.Key = int16(binary.BigEndian.Uint16(frame[0:]))
	hdr.Version = int16(binary.BigEndian.Uint16(frame[2:]))
	hdr.CorrelationID = int32(binary.BigEndian.Uint32(frame[4:]))
	e, ok := handlers[hdr.Key]
	if !ok || hdr.Version < e.min || hdr.Version > e.max {
		return hdr, nil, nil, &versionError{key: hdr.Key, version: hdr.Version, known: ok}
	}
	rest := frame[8:]
	if len(rest) < 2 {
		return hdr, nil, nil, errShortHeader
	}
	n := int16(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	switch {
	case n == -1: // null client id
	case n < 0 || int(n) > len(rest):
		return hdr, nil, nil, fmt.Errorf("client id length %d: %w", n, errShortHeader)
	default:
		hdr.ClientID = string(rest[:n])
		rest = rest[n:]
	}
	req := kmsg.RequestForKey(hdr.Key)
	req.SetVersion(hdr.Version)
	if req.IsFlexible() {
		var err error
		if rest, err = skipTags(rest); err != nil {
			return hdr, nil, nil, fmt.Errorf("header tagged fields: %w", err)
		}
	}
	if err := req.ReadFrom(rest); err != nil {
		return hdr, nil, nil, fmt.Errorf("decode %s v%d: %w", kmsg.NameForKey(hdr.Key), hdr.Version, err)
	}
	return hdr, req, e.h, nil
}

// skipTags skips a tagged-field section (KIP-482) and returns what follows.
func skipTags(b []byte) ([]byte, error) {
	count, b, err := uvarint32(b)
	if err != nil {
		return nil, err
	}
	for ; count > 0; count-- {
		if _, b, err = uvarint32(b); err != nil { // tag
			return nil, err
		}
		var size uint32
		if size, b, err = uvarint32(b); err != nil {
			return nil, err
		}
		if uint64(size) > uint64(len(b)) {
			return nil, fmt.Errorf("tagged field of %d bytes, %d left", size, len(b))
		}
		b = b[size:]
	}
	return b, nil
}

// uvarint32 reads an unsigned varint of at most 32 bits.
func uvarint32(b []byte) (uint32, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 || v > 1<<32-1 {
		return 0, nil, errors.New("bad unsigned varint")
	}
	return uint32(v), b[n:], nil
}
