package tier

import (
	"bytes"
	"testing"
)

func TestMemChunksLRUBound(t *testing.T) {
	c := newMemChunks(100)
	c.put("a", 0, bytes.Repeat([]byte{1}, 40))
	c.put("a", 1, bytes.Repeat([]byte{2}, 40))
	if _, ok := c.get("a", 0); !ok { // a#0 becomes the most recent
		t.Fatal("a#0 missing")
	}
	c.put("b", 0, bytes.Repeat([]byte{3}, 40)) // evicts a#1, the least recent
	if _, ok := c.get("a", 1); ok {
		t.Fatal("a#1 kept beyond the bound")
	}
	if raw, ok := c.get("a", 0); !ok || raw[0] != 1 {
		t.Fatal("a#0 lost")
	}
	if c.mu.used > 100 {
		t.Fatalf("%d bytes held, bound 100", c.mu.used)
	}
	c.put("huge", 0, make([]byte, 101)) // larger than the bound: not kept
	if _, ok := c.get("huge", 0); ok {
		t.Fatal("a chunk larger than the bound was kept")
	}
	c.forget("a")
	if _, ok := c.get("a", 0); ok || c.mu.used != 40 {
		t.Fatalf("forget left a#0 (used %d)", c.mu.used)
	}
}
