package mem_test

import (
	"testing"

	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/mem"
	"github.com/strata-io/strata/tier/objstore/objstoretest"
)

func TestAcceptance(t *testing.T) {
	objstoretest.AcceptanceTest(t, func(t *testing.T) objstore.Store {
		s := mem.New()
		t.Cleanup(func() { s.Close() })
		return s
	})
}
