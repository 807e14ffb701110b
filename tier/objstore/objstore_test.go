package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/mem"
	"github.com/strata-io/strata/tier/objstore/objstoretest"
)

func TestValidateKey(t *testing.T) {
	for _, k := range []string{"a", "a/b", "a b/c%d", ".x/y.", "ü/日本", strings.Repeat("k", objstore.MaxKeyLen)} {
		if err := objstore.ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q) = %v", k, err)
		}
	}
	for _, k := range []string{"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/..", "a\x00", "\x7f", "\xff", strings.Repeat("k", objstore.MaxKeyLen+1)} {
		if err := objstore.ValidateKey(k); !errors.Is(err, objstore.ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
}

// ignoresCondition is a store whose PutIfAbsent overwrites, like a server
// that drops If-None-Match.
type ignoresCondition struct{ *mem.Store }

func (s ignoresCondition) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.Put(ctx, key, r, size)
}

func (s ignoresCondition) String() string { return "s3://lying-bucket" }

func TestProbeConditionalCreate(t *testing.T) {
	ctx := context.Background()
	if err := objstore.ProbeConditionalCreate(ctx, mem.New(), "tier"); err != nil {
		t.Fatalf("mem: %v", err)
	}
	bad := ignoresCondition{mem.New()}
	err := objstore.ProbeConditionalCreate(ctx, bad, "tier")
	if !errors.Is(err, objstore.ErrNoConditionalCreate) || !strings.Contains(err.Error(), "s3://lying-bucket") {
		t.Fatalf("lying store: %v", err)
	}
	n := 0
	_ = bad.List(ctx, "", func(objstore.ObjectInfo) error { n++; return nil })
	if n != 0 {
		t.Fatalf("probe left %d objects", n)
	}
}

func TestPrefixAcceptance(t *testing.T) {
	objstoretest.AcceptanceTest(t, func(t *testing.T) objstore.Store {
		return objstore.WithPrefix(mem.New(), "some/prefix")
	})
}

func TestCountingAcceptance(t *testing.T) {
	objstoretest.AcceptanceTest(t, func(t *testing.T) objstore.Store {
		return objstore.NewCounting(mem.New())
	})
}

func TestCounting(t *testing.T) {
	ctx := context.Background()
	c := objstore.NewCounting(mem.New())
	objstoretest.MustPut(t, c, "a", []byte("hello"))
	before := c.Counts()
	if _, err := c.GetRange(ctx, "a", 1, 3); err != nil {
		t.Fatal(err)
	}
	if got := objstoretest.MustGet(t, c, "a"); string(got) != "hello" {
		t.Fatal(string(got))
	}
	if _, err := c.Stat(ctx, "missing"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatal(err)
	}
	if err := c.PutIfAbsent(ctx, "a", bytes.NewReader([]byte("x")), 1); !errors.Is(err, objstore.ErrExists) {
		t.Fatal(err)
	}
	if _, err := c.GetRange(ctx, "a", 4, 3); err == nil {
		t.Fatal("short range")
	}
	d := c.Counts().Sub(before)
	want := map[objstore.Op]objstore.OpCount{
		objstore.OpPut:         {},
		objstore.OpGetRange:    {Calls: 2, Errors: 1, Bytes: 3},
		objstore.OpGet:         {Calls: 1, Bytes: 5},
		objstore.OpStat:        {Calls: 1},
		objstore.OpPutIfAbsent: {Calls: 1},
	}
	for op, w := range want {
		if g := d.Get(op); g != w {
			t.Errorf("%s: got %+v, want %+v", op, g, w)
		}
	}
	if b := before.Get(objstore.OpPut); b != (objstore.OpCount{Calls: 1, Bytes: 5}) {
		t.Errorf("put: %+v", b)
	}
	if s := d.String(); !strings.Contains(s, "get-range=2/1err/3B") {
		t.Errorf("String() = %q", s)
	}
	c.Reset()
	if c.Counts() != (objstore.Counts{}) {
		t.Error("Reset left counts")
	}
}
