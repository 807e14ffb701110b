package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/strata-io/strata/ingest/broker"
	"github.com/strata-io/strata/ingest/wire"
)

func TestResetTargetValidate(t *testing.T) {
	for _, tc := range []struct {
		t    resetTarget
		want string // error substring, "" for none
	}{
		{resetTarget{offset: -1}, "exactly one"},
		{resetTarget{earliest: true, offset: -1}, ""},
		{resetTarget{latest: true, offset: -1}, ""},
		{resetTarget{offset: 0}, ""},
		{resetTarget{datetime: "2026-11-25T08:00:00Z", offset: -1}, ""},
		{resetTarget{datetime: "yesterday", offset: -1}, "RFC 3339"},
		{resetTarget{earliest: true, latest: true, offset: -1}, "exactly one"},
		{resetTarget{earliest: true, offset: 5}, "exactly one"},
	} {
		_, err := tc.t.validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.t, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: got %v, want an error with %q", tc.t, err, tc.want)
		}
	}
}

// startGroupsBroker runs an in-process broker for the groups commands.
func startGroupsBroker(t *testing.T) string {
	t.Helper()
	return startCLIBroker(t, nil)
}

// startCLIBroker runs an in-process broker on a free loopback port for the
// commands' tests; tune adjusts its config. It stops with the test.
func startCLIBroker(t *testing.T, tune func(*broker.Config)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := broker.Config{
		NodeID: 0, Host: "127.0.0.1", Port: int32(ln.Addr().(*net.TCPAddr).Port), DataDir: t.TempDir(),
		NumPartitions: 1, Logger: quiet, MinFreeBytes: 1 << 20,
	}
	if tune != nil {
		tune(&cfg)
	}
	b, err := broker.Open(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srv, err := wire.NewServer(wire.Config{Logger: quiet, Broker: b})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		b.Close()
	})
	return ln.Addr().String()
}

// runGroups runs `strata groups args…` and returns stdout and the error.
func runGroups(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCommand(t, groupsCmd(), args...)
}

// runCommand runs `strata <cmd> args…` and returns stdout and the error.
func runCommand(t *testing.T, cmd *cobra.Command, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "strata", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(cmd)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(append([]string{cmd.Name()}, args...))
	err := root.Execute()
	return out.String(), err
}

// TestGroupsCommands: ls, describe and reset of an Empty group with
// simple (non-member) commits; errors for an unknown group and topic and
// an unreachable broker.
func TestGroupsCommands(t *testing.T) {
	addr := startGroupsBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("events"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	// 10 records on partition 0, 4 on partition 1.
	for p, n := range []int{10, 4} {
		for i := range n {
			r := &kgo.Record{Value: fmt.Appendf(nil, "%d-%d", p, i), Partition: int32(p)}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	offs := make(kadm.Offsets)
	offs.Add(kadm.Offset{Topic: "events", Partition: 0, At: 7, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, "billing", offs); err != nil {
		t.Fatal(err)
	}

	out, err := runGroups(t, "ls", "--bootstrap", addr)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^billing\s+Empty\s`).MatchString(out) {
		t.Errorf("ls:\n%s", out)
	}

	out, err = runGroups(t, "describe", "billing", "--bootstrap", addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`(?m)^events\s+0\s+7\s+10\s+3\s+-$`, `(?m)^events\s+1\s+-\s+4\s+-\s+-$`, `total lag 3`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("describe: no %s in\n%s", re, out)
		}
	}

	// Dry run: prints the plan, commits nothing.
	out, err = runGroups(t, "reset", "billing", "--topic", "events", "--to-latest", "--bootstrap", addr)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^events\s+0\s+7\s+10$`).MatchString(out) || !regexp.MustCompile(`(?m)^events\s+1\s+-\s+4$`).MatchString(out) || !strings.Contains(out, "dry run") {
		t.Errorf("reset dry run:\n%s", out)
	}
	got, err := adm.FetchOffsets(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := got.Lookup("events", 0); o.At != 7 {
		t.Errorf("after the dry run partition 0 is at %d, want 7", o.At)
	}
	if _, ok := got.Lookup("events", 1); ok {
		if o, _ := got.Lookup("events", 1); o.At >= 0 {
			t.Errorf("after the dry run partition 1 is at %d, want no commit", o.At)
		}
	}

	// --to-offset clamps to each partition's end; --execute commits.
	out, err = runGroups(t, "reset", "billing", "--topic", "events", "--to-offset", "5", "--execute", "--bootstrap", addr)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^events\s+0\s+7\s+5$`).MatchString(out) || !regexp.MustCompile(`(?m)^events\s+1\s+-\s+4$`).MatchString(out) || !strings.Contains(out, "committed 2 offsets") {
		t.Errorf("reset --execute:\n%s", out)
	}
	got, err = adm.FetchOffsets(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	o0, _ := got.Lookup("events", 0)
	o1, _ := got.Lookup("events", 1)
	if o0.At != 5 || o1.At != 4 {
		t.Errorf("after --execute: partition 0 at %d, 1 at %d; want 5 and 4", o0.At, o1.At)
	}

	// --to-earliest, and a time after every record (the end offsets).
	if out, err = runGroups(t, "reset", "billing", "--topic", "events", "--to-earliest", "--bootstrap", addr); err != nil || !regexp.MustCompile(`(?m)^events\s+0\s+5\s+0$`).MatchString(out) {
		t.Errorf("reset --to-earliest: %v\n%s", err, out)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if out, err = runGroups(t, "reset", "billing", "--topic", "events", "--to-datetime", future, "--bootstrap", addr); err != nil || !regexp.MustCompile(`(?m)^events\s+0\s+5\s+10$`).MatchString(out) {
		t.Errorf("reset --to-datetime %s: %v\n%s", future, err, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"describe", "nobody", "--bootstrap", addr}, `unknown group "nobody"`},
		{[]string{"reset", "billing", "--topic", "nope", "--to-earliest", "--bootstrap", addr}, `unknown topic "nope"`},
		{[]string{"reset", "billing", "--to-earliest", "--bootstrap", addr}, "--topic is required"},
		{[]string{"reset", "billing", "--topic", "events", "--bootstrap", addr}, "exactly one"},
		{[]string{"ls", "--bootstrap", "127.0.0.1:1", "--timeout", "5s"}, "cannot reach a broker at 127.0.0.1:1"},
	} {
		_, err := runGroups(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}
