package wire

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// encodeFrame encodes req as a frame body (no size prefix) with kmsg's own
// request formatter, independent of our decoder.
func encodeFrame(req kmsg.Request, clientID *string, corr int32) []byte {
	opts := []kmsg.RequestFormatterOpt{}
	if clientID != nil {
		opts = append(opts, kmsg.FormatterClientID(*clientID))
	}
	return kmsg.NewRequestFormatter(opts...).AppendRequest(nil, req, corr)[4:]
}

func TestParseRequest(t *testing.T) {
	id := "my-client"
	apiV := func(v int16) kmsg.Request {
		r := kmsg.NewPtrApiVersionsRequest()
		r.Version = v
		r.ClientSoftwareName, r.ClientSoftwareVersion = "sw", "1"
		return r
	}
	tests := []struct {
		name     string
		frame    []byte
		wantHdr  RequestHeader
		wantErr  bool
		wantVErr bool // a *versionError
	}{
		{"ApiVersions v0 null client id", encodeFrame(apiV(0), nil, 1), RequestHeader{18, 0, 1, ""}, false, false},
		{"ApiVersions v2 client id", encodeFrame(apiV(2), &id, 2), RequestHeader{18, 2, 2, id}, false, false},
		{"ApiVersions v3 flexible", encodeFrame(apiV(3), &id, 3), RequestHeader{18, 3, 3, id}, false, false},
		{"ApiVersions v4 flexible", encodeFrame(apiV(4), &id, -4), RequestHeader{18, 4, -4, id}, false, false},
		{"ApiVersions v5 unsupported", encodeFrame(apiV(5), &id, 5), RequestHeader{18, 5, 5, ""}, true, true},
		{"unknown key", []byte{0x7f, 0, 0, 1, 0, 0, 0, 9, 0xff, 0xff}, RequestHeader{0x7f00, 1, 9, ""}, true, true},
		{"short header", []byte{0, 18, 0, 0, 0, 0, 0}, RequestHeader{}, true, false},
		{"no client id", []byte{0, 18, 0, 0, 0, 0, 0, 1}, RequestHeader{18, 0, 1, ""}, true, false},
		{"client id too long", []byte{0, 18, 0, 0, 0, 0, 0, 1, 0, 2, 'a'}, RequestHeader{18, 0, 1, ""}, true, false},
		{"bad tag varint", []byte{0, 18, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 0x80}, RequestHeader{18, 3, 1, ""}, true, false},
		{"truncated v3 body", []byte{0, 18, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 0, 5, 'a'}, RequestHeader{18, 3, 1, ""}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr, body, h, err := parseRequest(tc.frame)
			if hdr != tc.wantHdr {
				t.Errorf("header %+v, want %+v", hdr, tc.wantHdr)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			var verr *versionError
			if errors.As(err, &verr) != tc.wantVErr {
				t.Fatalf("err %v: versionError %v", err, tc.wantVErr)
			}
			if err != nil {
				return
			}
			if h == nil || body.Key() != hdr.Key || body.GetVersion() != hdr.Version {
				t.Fatalf("body %T v%d handler %v", body, body.GetVersion(), h != nil)
			}
			if r := body.(*kmsg.ApiVersionsRequest); hdr.Version >= 3 && (r.ClientSoftwareName != "sw" || r.ClientSoftwareVersion != "1") {
				t.Fatalf("body %+v", r)
			}
		})
	}
}

func TestRegisterRejectsBadRegistrations(t *testing.T) {
	nop := func(*Server, *Request) Reply { return Reply{} }
	for _, tc := range []struct {
		name     string
		key      int16
		min, max int16
		h        HandlerFunc
	}{
		{"duplicate", apiVersionsKey, 0, 4, nop},
		{"unknown key", 9999, 0, 0, nop},
		{"nil handler", 4, 0, 0, nil},
		{"negative min", 4, -1, 0, nop},
		{"empty range", 4, 2, 1, nop},
		{"beyond kmsg", 4, 0, 100, nop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("register did not panic")
				}
				if _, ok := handlers[4]; ok {
					t.Fatal("bad registration was kept")
				}
			}()
			register(tc.key, tc.min, tc.max, tc.h)
		})
	}
}

func TestSkipTags(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		rest int // bytes left, or -1 for an error
	}{
		{[]byte{0, 9}, 1},
		{[]byte{2, 1, 1, 'a', 2, 0, 9, 9}, 2},
		{[]byte{1, 1, 5, 'a'}, -1},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, -1}, // varint over 32 bits
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, -1},       // 2^32-1 tags, none present
		{nil, -1},
	} {
		rest, err := skipTags(tc.in)
		if (err != nil) != (tc.rest < 0) || (err == nil && len(rest) != tc.rest) {
			t.Errorf("skipTags(% x) = % x, %v; want %d left", tc.in, rest, err, tc.rest)
		}
	}
}

// FuzzReadRequest decodes arbitrary frames: header and body decoding must
// never panic, and a decoded request must round-trip through kmsg.
func FuzzReadRequest(f *testing.F) {
	id := "fuzz"
	for v := int16(0); v <= 5; v++ {
		r := kmsg.NewPtrApiVersionsRequest()
		r.Version = v
		r.ClientSoftwareName, r.ClientSoftwareVersion = "kgo", "1.0"
		f.Add(encodeFrame(r, &id, int32(v)))
	}
	f.Add(encodeFrame(testReq("echo", "tag", []byte("payload")), &id, 7))
	for v := int16(1); v <= 3; v++ {
		r := kmsg.NewPtrControlledShutdownRequest()
		r.Version, r.BrokerID, r.BrokerEpoch = v, 3, 9
		f.Add(encodeFrame(r, nil, 1))
	}
	f.Add([]byte{0, 58, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 3, 1, 9})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		hdr, body, h, err := parseRequest(frame)
		if err != nil {
			if body != nil || h != nil {
				t.Fatal("error with a body or handler")
			}
			return
		}
		if body.Key() != hdr.Key || body.GetVersion() != hdr.Version {
			t.Fatalf("body %s v%d for header %+v", kmsg.NameForKey(body.Key()), body.GetVersion(), hdr)
		}
		again := kmsg.RequestForKey(hdr.Key)
		again.SetVersion(hdr.Version)
		if err := again.ReadFrom(body.AppendTo(nil)); err != nil {
			t.Fatalf("re-decode %s v%d: %v", kmsg.NameForKey(hdr.Key), hdr.Version, err)
		}
	})
}
