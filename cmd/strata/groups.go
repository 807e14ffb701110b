package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// groupsCmd is `strata groups`: consumer groups through the Kafka protocol
// (kadm), against any broker of the cluster.
func groupsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "groups",
		Short: "List consumer groups, show their lag, reset their offsets",
		Long: `Consumer group administration through the Kafka protocol: these commands
are Kafka clients of a running broker (--bootstrap) and work against any
Kafka-compatible broker.

Like serve, every flag can also be set with an environment variable
(STRATA_ plus the flag name in upper case with '-' as '_', e.g.
STRATA_BOOTSTRAP).`,
	}
	cmd.AddCommand(groupsLsCmd(), groupsDescribeCmd(), groupsResetCmd())
	return cmd
}

// groupsConn is the connection flags of every groups subcommand.
type groupsConn struct {
	bootstrap string
	timeout   time.Duration
}

func (c *groupsConn) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.bootstrap, "bootstrap", "127.0.0.1:9092", "broker address(es), host:port, comma separated")
	f.DurationVar(&c.timeout, "timeout", 30*time.Second, "give up after this long")
}

// run applies the environment, connects and calls fn with an admin
// client, within the timeout.
func (c *groupsConn) run(cmd *cobra.Command, fn func(ctx context.Context, adm *kadm.Client) error) error {
	if err := applyEnvAndFile(cmd.Flags(), ""); err != nil {
		return err
	}
	parent := cmd.Context()
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()
	adm, err := dialGroupsAdmin(ctx, c.bootstrap)
	if err != nil {
		return err
	}
	defer adm.Close()
	return fn(ctx, adm)
}

// dialGroupsAdmin returns an admin client of the brokers at bootstrap,
// after checking that one answers.
func dialGroupsAdmin(ctx context.Context, bootstrap string) (*kadm.Client, error) {
	var seeds []string
	for _, s := range strings.Split(bootstrap, ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return nil, errors.New("--bootstrap is empty")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DialTimeout(5*time.Second), kgo.ClientID("strata-groups"))
	if err != nil {
		return nil, fmt.Errorf("--bootstrap %q: %w", bootstrap, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("cannot reach a broker at %s: %w", bootstrap, err)
	}
	return kadm.NewClient(cl), nil
}

func groupsLsCmd() *cobra.Command {
	var c groupsConn
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List consumer groups with their state, protocol and member count",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.run(cmd, func(ctx context.Context, adm *kadm.Client) error {
				return runGroupsLs(ctx, cmd.OutOrStdout(), adm)
			})
		},
	}
	c.register(cmd)
	return cmd
}

func runGroupsLs(ctx context.Context, w io.Writer, adm *kadm.Client) error {
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("list groups: %w", err)
	}
	names := listed.Groups()
	var described kadm.DescribedGroups
	if len(names) > 0 {
		if described, err = adm.DescribeGroups(ctx, names...); err != nil {
			return fmt.Errorf("describe groups: %w", err)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSTATE\tPROTOCOL-TYPE\tPROTOCOL\tMEMBERS")
	for _, l := range listed.Sorted() {
		d, ok := described[l.Group]
		state, proto, members := l.State, "-", "-"
		if ok && d.Err == nil {
			state, members = d.State, strconv.Itoa(len(d.Members))
			if d.Protocol != "" {
				proto = d.Protocol
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Group, orDash(state), orDash(l.ProtocolType), proto, members)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func groupsDescribeCmd() *cobra.Command {
	var c groupsConn
	cmd := &cobra.Command{
		Use:   "describe <group>",
		Short: "Show a group's members, assignments and per-partition lag",
		Long: `Show a group's state and members with their assigned partitions, then for
every partition of every topic the group has committed offsets in: the
committed offset, the log end offset (high watermark) and the lag, end
minus committed. A partition without a commit shows "-".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run(cmd, func(ctx context.Context, adm *kadm.Client) error {
				return runGroupsDescribe(ctx, cmd.OutOrStdout(), adm, args[0])
			})
		},
	}
	c.register(cmd)
	return cmd
}

// partitionLag is one row of `groups describe`.
type partitionLag struct {
	Topic     string
	Partition int32
	Committed int64 // -1: no commit
	End       int64
	Lag       int64 // -1 without a commit
	Member    string
}

// describeGroup fetches a group's description and lag. An unknown group
// (Dead, no offsets) is an error.
func describeGroup(ctx context.Context, adm *kadm.Client, group string) (kadm.DescribedGroup, []partitionLag, error) {
	ds, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return kadm.DescribedGroup{}, nil, fmt.Errorf("describe group %q: %w", group, err)
	}
	d, ok := ds[group]
	if !ok {
		return d, nil, fmt.Errorf("describe group %q: no answer", group)
	}
	if d.Err != nil {
		return d, nil, fmt.Errorf("describe group %q: %w", group, d.Err)
	}
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return d, nil, fmt.Errorf("fetch offsets of group %q: %w", group, err)
	}
	if err := offs.Error(); err != nil {
		return d, nil, fmt.Errorf("fetch offsets of group %q: %w", group, err)
	}
	if (d.State == "Dead" || d.State == "") && len(d.Members) == 0 && len(offs) == 0 {
		return d, nil, fmt.Errorf("unknown group %q", group)
	}
	owner := map[string]map[int32]string{}
	for _, m := range d.Members {
		if ca, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range ca.Topics {
				if owner[t.Topic] == nil {
					owner[t.Topic] = map[int32]string{}
				}
				for _, p := range t.Partitions {
					owner[t.Topic][p] = m.MemberID
				}
			}
		}
	}
	topics := map[string]bool{}
	for t := range offs {
		topics[t] = true
	}
	for t := range owner {
		topics[t] = true
	}
	var rows []partitionLag
	if len(topics) > 0 {
		names := make([]string, 0, len(topics))
		for t := range topics {
			names = append(names, t)
		}
		ends, err := adm.ListEndOffsets(ctx, names...)
		if err != nil {
			return d, nil, fmt.Errorf("list end offsets: %w", err)
		}
		for t, ps := range ends {
			for p, e := range ps {
				if p < 0 { // a topic that no longer exists
					continue
				}
				r := partitionLag{Topic: t, Partition: p, Committed: -1, End: e.Offset, Lag: -1, Member: owner[t][p]}
				if e.Err != nil {
					r.End = -1
				}
				if o, ok := offs.Lookup(t, p); ok && o.At >= 0 {
					r.Committed = o.At
					if r.End >= 0 {
						r.Lag = max(r.End-r.Committed, 0)
					}
				}
				rows = append(rows, r)
			}
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Topic != rows[j].Topic {
			return rows[i].Topic < rows[j].Topic
		}
		return rows[i].Partition < rows[j].Partition
	})
	return d, rows, nil
}

func runGroupsDescribe(ctx context.Context, w io.Writer, adm *kadm.Client, group string) error {
	d, rows, err := describeGroup(ctx, adm, group)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "group %s: state %s, protocol %s/%s, %d members\n\n", group, orDash(d.State), orDash(d.ProtocolType), orDash(d.Protocol), len(d.Members))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(d.Members) > 0 {
		fmt.Fprintln(tw, "MEMBER\tINSTANCE\tCLIENT-ID\tHOST\tASSIGNMENT")
		for _, m := range d.Members {
			inst := "-"
			if m.InstanceID != nil {
				inst = *m.InstanceID
			}
			var parts []string
			if ca, ok := m.Assigned.AsConsumer(); ok {
				for _, t := range ca.Topics {
					ps := append([]int32(nil), t.Partitions...)
					sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
					var s []string
					for _, p := range ps {
						s = append(s, strconv.Itoa(int(p)))
					}
					parts = append(parts, t.Topic+":"+strings.Join(s, ","))
				}
			}
			sort.Strings(parts)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.MemberID, inst, orDash(m.ClientID), orDash(m.ClientHost), orDash(strings.Join(parts, " ")))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	var total int64
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tMEMBER")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", r.Topic, r.Partition, offsetOrDash(r.Committed), offsetOrDash(r.End), offsetOrDash(r.Lag), orDash(r.Member))
		if r.Lag > 0 {
			total += r.Lag
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\ntotal lag %d\n", total)
	return nil
}

func offsetOrDash(o int64) string {
	if o < 0 {
		return "-"
	}
	return strconv.FormatInt(o, 10)
}

// resetTarget is where `groups reset` moves the offsets to.
type resetTarget struct {
	earliest, latest bool
	datetime         string
	offset           int64 // -1: not given
}

type groupsResetOptions struct {
	topic   string
	target  resetTarget
	execute bool
}

func groupsResetCmd() *cobra.Command {
	var c groupsConn
	o := groupsResetOptions{target: resetTarget{offset: -1}}
	cmd := &cobra.Command{
		Use:   "reset <group> --topic <topic> (--to-earliest | --to-latest | --to-datetime <RFC3339> | --to-offset N)",
		Short: "Reset an inactive group's committed offsets on a topic (dry run unless --execute)",
		Long: `Compute new committed offsets for every partition of a topic: the log start
offset (--to-earliest), the log end offset (--to-latest), the first offset
with a timestamp at or after a time (--to-datetime, RFC 3339; the end offset
where there is none), or an offset (--to-offset, clamped to each partition's
start and end). The plan is printed; the offsets are committed only with
--execute.

The group must have no members (state Empty, or Dead for a group that does
not exist yet, which the commit creates): stop its consumers first. A
member that joins between the check and the commit makes the commit fail
(the broker refuses commits from outside the generation of a live group).`,
		Example: `  strata groups reset billing --topic events --to-earliest
  strata groups reset billing --topic events --to-datetime 2026-11-25T08:00:00Z --execute`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run(cmd, func(ctx context.Context, adm *kadm.Client) error {
				return runGroupsReset(ctx, cmd.OutOrStdout(), adm, args[0], o)
			})
		},
	}
	c.register(cmd)
	f := cmd.Flags()
	f.StringVar(&o.topic, "topic", "", "the topic whose offsets to reset (required)")
	f.BoolVar(&o.target.earliest, "to-earliest", false, "to each partition's log start offset")
	f.BoolVar(&o.target.latest, "to-latest", false, "to each partition's log end offset")
	f.StringVar(&o.target.datetime, "to-datetime", "", "to the first offset at or after this time (RFC 3339)")
	f.Int64Var(&o.target.offset, "to-offset", -1, "to this offset (clamped to each partition's start and end)")
	f.BoolVar(&o.execute, "execute", false, "commit the new offsets (default: only print the plan)")
	return cmd
}

// validate checks that exactly one target is given and parses the time.
func (t resetTarget) validate() (time.Time, error) {
	n := 0
	for _, b := range []bool{t.earliest, t.latest, t.datetime != "", t.offset >= 0} {
		if b {
			n++
		}
	}
	if n != 1 {
		return time.Time{}, errors.New("give exactly one of --to-earliest, --to-latest, --to-datetime, --to-offset")
	}
	if t.datetime == "" {
		return time.Time{}, nil
	}
	ts, err := time.Parse(time.RFC3339Nano, t.datetime)
	if err != nil {
		return time.Time{}, fmt.Errorf("--to-datetime %q: want RFC 3339, e.g. 2026-11-25T08:00:00Z", t.datetime)
	}
	return ts, nil
}

// resetRow is one partition of a reset plan.
type resetRow struct {
	Partition int32
	Current   int64 // -1: no commit
	New       int64
}

// planReset computes the new offsets for every partition of topic.
func planReset(ctx context.Context, adm *kadm.Client, group, topic string, t resetTarget, at time.Time) ([]resetRow, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	if err := topicOffsetsErr(topic, ends); err != nil {
		return nil, err
	}
	if err := topicOffsetsErr(topic, starts); err != nil {
		return nil, err
	}
	var byTime kadm.ListedOffsets
	if t.datetime != "" {
		if byTime, err = adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), topic); err != nil {
			return nil, fmt.Errorf("list offsets by time: %w", err)
		}
		if err := topicOffsetsErr(topic, byTime); err != nil {
			return nil, err
		}
	}
	cur, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err != nil {
		return nil, fmt.Errorf("fetch offsets of group %q: %w", group, err)
	}
	var rows []resetRow
	for p, e := range ends[topic] {
		s, _ := starts.Lookup(topic, p)
		r := resetRow{Partition: p, Current: -1}
		if c, ok := cur.Lookup(topic, p); ok && c.Err == nil && c.At >= 0 {
			r.Current = c.At
		}
		switch {
		case t.earliest:
			r.New = s.Offset
		case t.latest:
			r.New = e.Offset
		case t.datetime != "":
			b, ok := byTime.Lookup(topic, p)
			if !ok || b.Offset < 0 {
				r.New = e.Offset
			} else {
				r.New = b.Offset
			}
		default:
			r.New = min(max(t.offset, s.Offset), e.Offset)
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Partition < rows[j].Partition })
	return rows, nil
}

// topicOffsetsErr turns list offsets errors into a message: an unknown
// topic, or the first partition's error.
func topicOffsetsErr(topic string, l kadm.ListedOffsets) error {
	ps, ok := l[topic]
	if !ok || len(ps) == 0 {
		return fmt.Errorf("unknown topic %q", topic)
	}
	for p, o := range ps {
		if errors.Is(o.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("unknown topic %q", topic)
		}
		if o.Err != nil {
			return fmt.Errorf("topic %q partition %d: %w", topic, p, o.Err)
		}
	}
	return nil
}

func runGroupsReset(ctx context.Context, w io.Writer, adm *kadm.Client, group string, o groupsResetOptions) error {
	if o.topic == "" {
		return errors.New("--topic is required")
	}
	at, err := o.target.validate()
	if err != nil {
		return err
	}
	ds, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return fmt.Errorf("describe group %q: %w", group, err)
	}
	d := ds[group]
	if d.Err != nil {
		return fmt.Errorf("describe group %q: %w", group, d.Err)
	}
	if (d.State != "Empty" && d.State != "Dead") || len(d.Members) > 0 {
		return fmt.Errorf("group %q is %s with %d members: stop its consumers first (offsets can only be reset for an inactive group)", group, d.State, len(d.Members))
	}
	rows, err := planReset(ctx, adm, group, o.topic, o.target, at)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCURRENT\tNEW")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", o.topic, r.Partition, offsetOrDash(r.Current), r.New)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !o.execute {
		fmt.Fprintln(w, "\ndry run: nothing committed (add --execute to commit these offsets)")
		return nil
	}
	offs := make(kadm.Offsets)
	for _, r := range rows {
		offs.Add(kadm.Offset{Topic: o.topic, Partition: r.Partition, At: r.New, LeaderEpoch: -1})
	}
	resp, err := adm.CommitOffsets(ctx, group, offs)
	if err != nil {
		return fmt.Errorf("commit offsets of group %q: %w", group, err)
	}
	if err := resp.Error(); err != nil {
		return fmt.Errorf("commit offsets of group %q: %w", group, err)
	}
	fmt.Fprintf(w, "\ncommitted %d offsets for group %s\n", len(rows), group)
	return nil
}
