package keymap

import (
	"fmt"
	"testing"
)

func TestMap(t *testing.T) {
	m := New(3)
	for i, k := range []string{"a", "b", "a", "c"} {
		if !m.Put([]byte(k), int64(i)) {
			t.Fatalf("Put(%s) refused below the limit", k)
		}
	}
	if m.Put([]byte("d"), 9) {
		t.Fatal("a new key was accepted by a full map")
	}
	if !m.Put([]byte("b"), 7) {
		t.Fatal("a known key was refused by a full map")
	}
	want := map[string]int64{"a": 2, "b": 7, "c": 3}
	for k, off := range want {
		if got, ok := m.Get([]byte(k)); !ok || got != off {
			t.Fatalf("Get(%s) = %d, %v; want %d", k, got, ok, off)
		}
	}
	if _, ok := m.Get([]byte("d")); ok {
		t.Fatal("Get of a refused key found it")
	}
	if m.Len() != 3 {
		t.Fatalf("Len = %d", m.Len())
	}
	// Distinct keys stay apart.
	e := New(1 << 16)
	for i := range 50000 {
		e.Put(fmt.Appendf(nil, "key-%d", i), int64(i))
	}
	if e.Len() != 50000 {
		t.Fatalf("50000 distinct keys mapped to %d entries", e.Len())
	}
}
