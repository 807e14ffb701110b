package main

import "testing"

func TestPprofPort(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want int
	}{
		{"", 0},
		{"16060", 16060},
		{"0", 0},
		{"-5", 0},
		{"x", 0},
		{"65534", 0}, // no room for three brokers' ports
	} {
		t.Setenv("STRATA_LOAD_CLUSTER_PPROF", tc.env)
		if got := pprofPort(); got != tc.want {
			t.Errorf("STRATA_LOAD_CLUSTER_PPROF=%q: port %d, want %d", tc.env, got, tc.want)
		}
	}
}
