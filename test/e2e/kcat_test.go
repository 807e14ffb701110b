package e2e

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func kcat(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is not installed (make test installs it with apt-get): %v", err)
	}
	ctx := ctxT(t, 60*time.Second)
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}

// TestKcat runs librdkafka's kcat against the real strata binary: metadata,
// idempotent produce with every codec, consume to the end.
func TestKcat(t *testing.T) {
	p := startProc(t, t.TempDir(), freePort(t))
	meta := kcat(t, "", "-b", p.addr, "-L")
	if !strings.Contains(meta, "1 brokers") {
		t.Fatalf("kcat -L:\n%s", meta)
	}
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		topic := "kcat-" + codec
		var in strings.Builder
		for i := 0; i < 500; i++ {
			fmt.Fprintf(&in, "%s-%d\n", codec, i)
		}
		kcat(t, in.String(), "-b", p.addr, "-P", "-t", topic, "-z", codec, "-X", "enable.idempotence=true")
		out := kcat(t, "", "-b", p.addr, "-C", "-t", topic, "-o", "beginning", "-e", "-q")
		if out != in.String() {
			t.Fatalf("%s: consumed %d bytes, produced %d\nfirst lines: %.200s", codec, len(out), in.Len(), out)
		}
	}
	// Offsets by timestamp (-Q) and from an offset.
	out := kcat(t, "", "-b", p.addr, "-C", "-t", "kcat-none", "-o", "495", "-e", "-q")
	if out != "none-495\nnone-496\nnone-497\nnone-498\nnone-499\n" {
		t.Fatalf("from offset 495: %q", out)
	}
	out = kcat(t, "", "-b", p.addr, "-Q", "-t", "kcat-none:0:0")
	if !strings.Contains(out, "offset 0") {
		t.Fatalf("kcat -Q: %q", out)
	}
	if err := p.term(); err != nil {
		t.Fatal(err)
	}
}
