package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNoConditionalCreate is wrapped by ProbeConditionalCreate's error when the
// store accepts a second PutIfAbsent of the same key.
var ErrNoConditionalCreate = errors.New("does not honour conditional create (If-None-Match: *); tiering refuses to run")

// ProbeConditionalCreate checks that s honours PutIfAbsent: it creates a
// random key under prefix twice, expects the second attempt to fail with
// ErrExists, and deletes the key. Tiering calls it at start, because
// manifests rely on conditional create and some S3-compatible servers
// silently ignore If-None-Match. The error names the store by its String
// method when it has one (the backends do, e.g. "s3://bucket at endpoint").
func ProbeConditionalCreate(ctx context.Context, s Store, prefix string) error {
	name := fmt.Sprintf("%T", s)
	if st, ok := s.(fmt.Stringer); ok {
		name = st.String()
	}
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("probe conditional create: %w", err)
	}
	key := strings.TrimSuffix(prefix, "/") + "/_probe/conditional-create-" + hex.EncodeToString(rnd[:])
	key = strings.TrimPrefix(key, "/")
	body := []byte("strata conditional-create probe\n")
	// The first create of a new key can fail transiently: some servers
	// (versitygw) answer 409 to conditional writes racing in one bucket,
	// as when several brokers start at once. Retried a few times.
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = s.PutIfAbsent(ctx, key, bytes.NewReader(body), int64(len(body))); err == nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("probe conditional create on %s: first create of %s: %w", name, key, err)
	}
	err = s.PutIfAbsent(ctx, key, bytes.NewReader(body), int64(len(body)))
	// The probe key is unique; if deleting it fails it is an orphan that a
	// later probe or garbage collection of _probe/ can remove.
	delErr := s.Delete(context.WithoutCancel(ctx), key)
	switch {
	case errors.Is(err, ErrExists):
		if delErr != nil {
			return fmt.Errorf("probe conditional create on %s: delete %s: %w", name, key, delErr)
		}
		return nil
	case err == nil:
		return fmt.Errorf("object store at %s %w", name, ErrNoConditionalCreate)
	default:
		return fmt.Errorf("probe conditional create on %s: second create of %s: %w", name, key, err)
	}
}
