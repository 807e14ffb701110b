package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/klauspost/compress/s2"
)

func testPayloads() map[string][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 100<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	return map[string][]byte{
		"empty":      {},
		"small":      []byte("hello, kafka"),
		"repetitive": bytes.Repeat([]byte("abcdefgh"), 20<<10), // 160 KiB, several xerial/lz4 blocks
		"random":     random,
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, codec := range allCodecs {
		for name, p := range testPayloads() {
			t.Run(CodecName(codec)+"/"+name, func(t *testing.T) {
				prefix := []byte("prefix")
				c, err := Compress(codec, p, append([]byte{}, prefix...))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.HasPrefix(c, prefix) {
					t.Fatal("Compress did not append to dst")
				}
				d, err := Decompress(codec, c[len(prefix):], append([]byte{}, prefix...), len(p)+1)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(d[len(prefix):], p) || !bytes.HasPrefix(d, prefix) {
					t.Fatalf("round trip mismatch: %d bytes in, %d out", len(p), len(d)-len(prefix))
				}
				if len(p) > 0 {
					// One byte short of the output must fail with ErrTooLarge, not
					// return partial data.
					out, err := Decompress(codec, c[len(prefix):], nil, len(p)-1)
					if !errors.Is(err, ErrTooLarge) || CodeOf(err) != CodeMessageTooLarge {
						t.Fatalf("limit %d: err %v, %d bytes", len(p)-1, err, len(out))
					}
				}
			})
		}
	}
}

func TestSnappyFormats(t *testing.T) {
	p := bytes.Repeat([]byte("snappy xerial "), 10<<10)
	c, _ := Compress(CodecSnappy, p, nil)
	if !bytes.HasPrefix(c, xerialMagic) || binary.BigEndian.Uint32(c[8:]) != 1 || binary.BigEndian.Uint32(c[12:]) != 1 {
		t.Fatalf("not xerial framed: % x", c[:16])
	}
	// A raw snappy block, as sarama and franz-go's block path write.
	raw := s2.EncodeSnappy(nil, p)
	d, err := Decompress(CodecSnappy, raw, nil, 0)
	if err != nil || !bytes.Equal(d, p) {
		t.Fatalf("raw snappy: %v", err)
	}
	// Broken framing: a block length running past the end.
	bad := append([]byte{}, c...)
	binary.BigEndian.PutUint32(bad[16:], 1<<30)
	if _, err := Decompress(CodecSnappy, bad, nil, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad framing: %v", err)
	}
}

// TestDecompressBombs checks that inputs claiming or producing huge outputs
// fail with ErrTooLarge under a small limit.
func TestDecompressBombs(t *testing.T) {
	const limit = 1 << 20
	big := make([]byte, 8<<20) // zeros compress ~1000:1
	for _, codec := range allCodecs[1:] {
		t.Run(CodecName(codec), func(t *testing.T) {
			c, err := Compress(codec, big, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Decompress(codec, c, nil, limit); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err %v, want ErrTooLarge", err)
			}
		})
	}
	// A raw snappy block whose header claims 1 GiB.
	claim := binary.AppendUvarint(nil, 1<<30)
	if _, err := Decompress(CodecSnappy, append(claim, 0, 0), nil, limit); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("snappy claim: %v", err)
	}
	// Many xerial blocks, each under the limit, together over it.
	block := s2.EncodeSnappy(nil, make([]byte, 512<<10))
	x := append([]byte{}, xerialMagic...)
	x = binary.BigEndian.AppendUint32(x, 1)
	x = binary.BigEndian.AppendUint32(x, 1)
	for range 3 {
		x = binary.BigEndian.AppendUint32(x, uint32(len(block)))
		x = append(x, block...)
	}
	if _, err := Decompress(CodecSnappy, x, nil, limit); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("xerial blocks: %v", err)
	}
}

func TestDecompressGarbage(t *testing.T) {
	for _, codec := range allCodecs[1:] {
		for _, in := range [][]byte{nil, {1, 2, 3}, bytes.Repeat([]byte{0xff}, 100)} {
			if _, err := Decompress(codec, in, nil, 1<<20); err == nil && len(in) > 0 {
				t.Errorf("%s: %x decoded", CodecName(codec), in)
			}
		}
	}
	if _, err := Decompress(6, []byte("x"), nil, 0); !errors.Is(err, ErrUnsupportedCompression) {
		t.Fatalf("codec 6: %v", err)
	}
	if _, err := Compress(6, []byte("x"), nil); !errors.Is(err, ErrUnsupportedCompression) {
		t.Fatalf("codec 6: %v", err)
	}
}

// TestCodecConcurrent exercises the pools under -race.
func TestCodecConcurrent(t *testing.T) {
	p := bytes.Repeat([]byte("concurrent "), 5000)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				codec := allCodecs[(g+i)%len(allCodecs)]
				c, err := Compress(codec, p, nil)
				if err != nil {
					t.Error(err)
					return
				}
				d, err := Decompress(codec, c, nil, len(p))
				if err != nil || !bytes.Equal(d, p) {
					t.Errorf("%s: %v", CodecName(codec), err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
