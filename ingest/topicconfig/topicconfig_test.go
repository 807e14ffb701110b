package topicconfig

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	cases := []struct {
		in      map[string]string
		bad     string // config the error must name; "" = valid
		message string
	}{
		{map[string]string{}, "", ""},
		{map[string]string{RetentionMs: "-1", RetentionBytes: "1000", SegmentBytes: "1048576"}, "", ""},
		{map[string]string{CleanupPolicy: "delete"}, "", ""},
		{map[string]string{CleanupPolicy: "compact"}, "", ""},
		{map[string]string{CleanupPolicy: "compact,delete"}, "", ""},
		{map[string]string{CleanupPolicy: "delete,compact"}, "", ""},
		{map[string]string{CleanupPolicy: "shred"}, CleanupPolicy, "list of"},
		{map[string]string{CleanupPolicy: "compact,shred"}, CleanupPolicy, "list of"},
		{map[string]string{CleanupPolicy: ""}, CleanupPolicy, "list of"},
		{map[string]string{RetentionMs: "abc"}, RetentionMs, "64-bit integer"},
		{map[string]string{RetentionMs: "-3"}, RetentionMs, "at least -1"},
		{map[string]string{SegmentBytes: "10"}, SegmentBytes, "at least"},
		{map[string]string{SegmentBytes: "9999999999"}, SegmentBytes, "32-bit"},
		{map[string]string{CompressionType: "brotli"}, CompressionType, "one of"},
		{map[string]string{MessageTimestampType: "Whenever"}, MessageTimestampType, "one of"},
		{map[string]string{Preallocate: "yes"}, Preallocate, "true or false"},
		{map[string]string{MinCleanableDirtyRatio: "1.5"}, MinCleanableDirtyRatio, "between"},
		{map[string]string{"made.up": "1"}, "made.up", "unknown"},
		{map[string]string{RemoteStorageEnable: "true"}, RemoteStorageEnable, "tiered storage"},
		// Without tiering, local.* values are accepted but inert, as in Kafka.
		{map[string]string{RetentionMs: "1000", LocalRetentionMs: "2000"}, "", ""},
		{map[string]string{UncleanLeaderElection: "true"}, "", ""},
		{map[string]string{UncleanLeaderElection: "yes"}, UncleanLeaderElection, "true or false"},
		// Refused on a tiered topic even before tiering is checked.
		{map[string]string{UncleanLeaderElection: "true", RemoteStorageEnable: "true"}, UncleanLeaderElection, "tiered"},
	}
	for _, c := range cases {
		err := Validate(c.in, Options{})
		if c.bad == "" {
			if err != nil {
				t.Errorf("%v: %v", c.in, err)
			}
			continue
		}
		var ce *Error
		if !errors.As(err, &ce) || ce.Name != c.bad || !strings.Contains(err.Error(), c.message) || !strings.Contains(err.Error(), c.bad) {
			t.Errorf("%v: got %v, want an error naming %s containing %q", c.in, err, c.bad, c.message)
		}
	}
}

func TestValidateTiered(t *testing.T) {
	tiered := func(kv ...string) map[string]string {
		m := map[string]string{RemoteStorageEnable: "true"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		in  map[string]string
		bad string
	}{
		{tiered(), ""},
		{tiered(RetentionMs, "1000", LocalRetentionMs, "-2"), ""},
		{tiered(RetentionMs, "1000", LocalRetentionMs, "500"), ""},
		{tiered(RetentionMs, "-1", LocalRetentionMs, "-1"), ""},
		{tiered(RetentionMs, "-1", LocalRetentionMs, "60000"), ""},
		{tiered(RetentionMs, "1000", LocalRetentionMs, "2000"), LocalRetentionMs},
		{tiered(RetentionMs, "1000", LocalRetentionMs, "-1"), LocalRetentionMs},
		{tiered(RetentionBytes, "100", LocalRetentionBytes, "200"), LocalRetentionBytes},
		{tiered(RetentionBytes, "100", LocalRetentionBytes, "50"), ""},
		{tiered(CleanupPolicy, "compact"), ""},
		{tiered(CleanupPolicy, "compact,delete"), ""},
		{tiered(CleanupPolicy, "delete,compact", RetentionMs, "1000", LocalRetentionMs, "2000"), LocalRetentionMs},
		// Unclean election and tiering exclude each other, in either order
		// of setting (the whole set is validated).
		{tiered(UncleanLeaderElection, "true"), UncleanLeaderElection},
		{tiered(UncleanLeaderElection, "false"), ""},
	}
	for _, c := range cases {
		err := Validate(c.in, Options{Tiering: true})
		var ce *Error
		if c.bad == "" && err != nil || c.bad != "" && (!errors.As(err, &ce) || ce.Name != c.bad) {
			t.Errorf("%v: got %v, want error naming %q", c.in, err, c.bad)
		}
	}
}

func TestResolve(t *testing.T) {
	c := Resolve(map[string]string{RetentionMs: "5000", MessageTimestampType: "LogAppendTime", MessageTimestampDiffMaxMs: "10"})
	if c.UncleanLeaderElection || !Resolve(map[string]string{UncleanLeaderElection: "true"}).UncleanLeaderElection {
		t.Fatalf("unclean.leader.election.enable resolved wrong")
	}
	if c.RetentionMs != 5000 || c.LocalRetentionMs != 5000 || c.LocalRetentionBytes != -1 || !c.LogAppendTime || c.TimestampBeforeMaxMs != 10 {
		t.Fatalf("resolved: %+v", c)
	}
	d := Resolve(nil)
	if d.SegmentBytes != 1<<30 || d.MaxMessageBytes != 1048588 || d.CompressionType != "producer" || d.TimestampAfterMaxMs != 3600000 {
		t.Fatalf("defaults: %+v", d)
	}
	for _, n := range Names() {
		if err := ValidateOne(n, Lookup(n).Default); err != nil {
			t.Errorf("default of %s does not validate: %v", n, err)
		}
	}
}

func TestCompacted(t *testing.T) {
	for policy, want := range map[string]bool{
		"delete": false, "compact": true, "compact,delete": true, "delete,compact": true, "delete, compact": true, "": false,
	} {
		if got := Compacted(policy); got != want {
			t.Errorf("Compacted(%q) = %v, want %v", policy, got, want)
		}
	}
	if c := Resolve(map[string]string{CleanupPolicy: "compact"}); !Compacted(c.CleanupPolicy) {
		t.Errorf("resolved policy %q", c.CleanupPolicy)
	}
	if c := Resolve(nil); Compacted(c.CleanupPolicy) {
		t.Errorf("default policy %q is compacted", c.CleanupPolicy)
	}
}
