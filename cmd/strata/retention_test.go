package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// runCLI runs the strata command line with args and returns its output
// and error (main prints the error to stderr and exits 1).
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := retentionCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

// TestRetentionPlanCommand: `strata retention plan` prints the admin API's
// text for the current and proposed configs, JSON with --output json, and
// fails with the API's message.
func TestRetentionPlanCommand(t *testing.T) {
	fx := newPlanFixture(t)
	addr := strings.TrimPrefix(fx.srv.URL, "http://")

	out, err := runCLI(t, "plan", "events", "--admin", fx.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"topic events: 2 partitions", "configs: current\n", "partition 0\n", "local: nothing to delete", "partition 1\n"} {
		if !strings.Contains(out, want) {
			t.Fatalf("current plan lacks %q:\n%s", want, out)
		}
	}

	// The host:port form, several --set, a value with a comma.
	out, err = runCLI(t, "plan", "events", "--admin", addr, "--set", "retention.ms=3600000", "--set", "cleanup.policy=compact,delete")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"configs: current with cleanup.policy=compact,delete, retention.ms=3600000 (proposed, not applied)",
		"retention plan (local log, cleanup.policy=compact,delete)",
		"log start: 0 -> ",
		"(retention.ms)",
		"compaction plan (local, cleanup.policy=compact,delete): clean: dirty ratio above min.cleanable.dirty.ratio",
		"cleanable: offsets [0, ",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("proposed plan lacks %q:\n%s", want, out)
		}
	}

	out, err = runCLI(t, "plan", "events", "--admin", fx.srv.URL, "--set", "retention.bytes=1", "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	var plan retentionPlanJSON
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	if r := plan.Partitions[0].Retention; len(r.Local) == 0 || r.Local[0].Reason != "retention.bytes" {
		t.Fatalf("json plan: %+v", r)
	}

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"plan", "nope", "--admin", fx.srv.URL}, `unknown topic "nope"`},
		{[]string{"plan", "events", "--admin", fx.srv.URL, "--set", "retention.ms=soon"}, `invalid value "soon" for configuration retention.ms`},
		{[]string{"plan", "events", "--admin", fx.srv.URL, "--set", "retention.ms=1", "--output", "json", "--set", "segment.bytes=1"}, "configuration segment.bytes: must be at least 1024"},
		{[]string{"plan", "events", "--admin", fx.srv.URL, "--set", "=1"}, `--set "=1": want key=value`},
		{[]string{"plan", "events", "--admin", fx.srv.URL, "--output", "yaml"}, "--output must be text or json"},
		{[]string{"plan", "events", "--admin", "ftp://127.0.0.1:1"}, "want an http:// or https:// address"},
		{[]string{"plan", "--admin", fx.srv.URL}, "accepts 1 arg(s)"},
	} {
		out, err := runCLI(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.msg) || out != "" {
			t.Fatalf("%v: %v, output %q; want an error with %q", tc.args, err, out, tc.msg)
		}
	}
	fx.srv.Close()
	if _, err := runCLI(t, "plan", "events", "--admin", fx.srv.URL); err == nil || !strings.Contains(err.Error(), "--admin-addr") {
		t.Fatalf("broker down: %v", err)
	}
}
