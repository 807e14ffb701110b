package main

import (
	"math/rand/v2"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// tierData is one kind of record data for the tiered-storage phase.
type tierData struct {
	name  string // short name, used in the topic name
	about string // for the report
	// codec is the producer's batch compression.
	codec kgo.CompressionCodec
	// gen returns a new record value (never reused: kgo keeps it until the
	// promise runs).
	newGen func(seed uint64) func() []byte
}

// seed returns the generator seed of the kind, so every topic of one kind
// gets the same records.
func (d tierData) seed() uint64 {
	var h uint64 = 14695981039346656037
	for i := range len(d.name) {
		h = (h ^ uint64(d.name[i])) * 1099511628211
	}
	return h
}

// tierDataKinds are the kinds the tier phase measures: text the broker's
// chunk compression can shrink, and batches the producer already
// compressed, which it should store as they are.
var tierDataKinds = []tierData{
	{
		name:   "json",
		about:  "JSON-like events (~280 B), uncompressed batches",
		codec:  kgo.NoCompression(),
		newGen: jsonGen,
	},
	{
		name:   "zstd",
		about:  "random hex (1 KiB, 4 bits of entropy per byte), zstd batches from the producer",
		codec:  kgo.ZstdCompression(),
		newGen: hexGen,
	},
}

var (
	jsonEvents    = []string{"page_view", "add_to_cart", "checkout", "search", "login", "logout", "click", "purchase"}
	jsonCountries = []string{"DE", "US", "FR", "GB", "JP", "BR", "IN", "NL", "SE", "ES"}
	jsonDevices   = []string{"mobile", "desktop", "tablet"}
	jsonPaths     = []string{"/", "/products/", "/cart", "/search?q=", "/account", "/checkout/step/"}
	jsonAgents    = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
		"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
	}
)

// jsonGen returns a generator of JSON event records, e.g.
//
//	{"ts":1764075600123,"event":"search","user":"u-00412345","session":"9f3a61c0d2e4b857",
//	 "path":"/search?q=48213","country":"DE","device":"mobile","items":3,"price":123.45,"ua":"Mozilla/5.0 ..."}
//
// Field names and vocabularies repeat, ids and numbers are random: about
// what application logs and events look like to a compressor.
func jsonGen(seed uint64) func() []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ts := int64(1764075600000)
	return func() []byte {
		ts += int64(r.IntN(5))
		b := make([]byte, 0, 320)
		b = append(b, `{"ts":`...)
		b = strconv.AppendInt(b, ts, 10)
		b = append(b, `,"event":"`...)
		b = append(b, jsonEvents[r.IntN(len(jsonEvents))]...)
		b = append(b, `","user":"u-`...)
		b = appendPadded(b, r.IntN(100_000_000), 8)
		b = append(b, `","session":"`...)
		b = appendHex(b, r.Uint64())
		b = append(b, `","path":"`...)
		b = append(b, jsonPaths[r.IntN(len(jsonPaths))]...)
		b = strconv.AppendInt(b, int64(r.IntN(100_000)), 10)
		b = append(b, `","country":"`...)
		b = append(b, jsonCountries[r.IntN(len(jsonCountries))]...)
		b = append(b, `","device":"`...)
		b = append(b, jsonDevices[r.IntN(len(jsonDevices))]...)
		b = append(b, `","items":`...)
		b = strconv.AppendInt(b, int64(r.IntN(10)), 10)
		b = append(b, `,"price":`...)
		b = strconv.AppendInt(b, int64(r.IntN(1000)), 10)
		b = append(b, '.')
		b = appendPadded(b, r.IntN(100), 2)
		b = append(b, `,"ua":"`...)
		b = append(b, jsonAgents[r.IntN(len(jsonAgents))]...)
		b = append(b, `"}`...)
		return b
	}
}

// hexGen returns a generator of 1 KiB values of random lowercase hex: zstd
// halves them, and nothing compresses them further once the producer has.
func hexGen(seed uint64) func() []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func() []byte {
		b := make([]byte, 0, 1024)
		for len(b) < 1024 {
			b = appendHex(b, r.Uint64())
		}
		return b
	}
}

const hexDigits = "0123456789abcdef"

// appendHex appends v as 16 hex digits.
func appendHex(b []byte, v uint64) []byte {
	for i := 60; i >= 0; i -= 4 {
		b = append(b, hexDigits[(v>>uint(i))&0xf])
	}
	return b
}

// appendPadded appends n in decimal, zero-padded to width digits.
func appendPadded(b []byte, n, width int) []byte {
	s := strconv.Itoa(n)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}
