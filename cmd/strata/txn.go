package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// txnCmd is `strata txn`: transactions through the Kafka protocol (kadm),
// against any broker of the cluster: ListTransactions (66),
// DescribeTransactions (65), DescribeProducers (61), ListOffsets and, to
// abort a hanging transaction, WriteTxnMarkers (27).
func txnCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "txn",
		Short: "List and describe transactions, find and abort hanging ones",
		Long: `Transaction administration through the Kafka protocol: these commands are
Kafka clients of a running broker (--bootstrap) and work against any
Kafka-compatible broker (Kafka 3.0+ for ls, describe and producers).

A transaction whose producer went away without committing or aborting is
normally aborted by its coordinator after transaction.timeout.ms. Until then,
or forever if the coordinator lost track of it (a "hanging" transaction), its
first offset holds the partition's last stable offset back: read_committed
consumers stop there and tiered uploads stop there. "strata txn producers"
shows which producer holds a partition back; "strata txn abort" writes an
abort marker for it, as Kafka's kafka-transactions.sh abort does.

Like serve, every flag can also be set with an environment variable
(STRATA_ plus the flag name in upper case with '-' as '_', e.g.
STRATA_BOOTSTRAP).`,
	}
	cmd.AddCommand(txnLsCmd(), txnDescribeCmd(), txnProducersCmd(), txnAbortCmd())
	return cmd
}

// txnStates are the transaction states of the wire protocol (Kafka's
// TransactionState names), valid in ListTransactions filters.
var txnStates = []string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"}

// parseTxnStates maps state names, in any case, to their wire names.
func parseTxnStates(in []string) ([]string, error) {
	var out []string
	for _, s := range in {
		i := slices.IndexFunc(txnStates, func(w string) bool { return strings.EqualFold(w, strings.TrimSpace(s)) })
		if i < 0 {
			return nil, fmt.Errorf("--state %q: want one of %s", s, strings.Join(txnStates, ", "))
		}
		if !slices.Contains(out, txnStates[i]) {
			out = append(out, txnStates[i])
		}
	}
	return out, nil
}

// partialErr reports whether err is a *kadm.ShardErrors from a request
// some brokers answered: what they answered is worth showing.
func partialErr(err error) bool {
	se, ok := errors.AsType[*kadm.ShardErrors](err)
	return ok && !se.AllFailed
}

// shardErr wraps the error of a request whose partial answer was printed.
func shardErr(what string, err error) error {
	if partialErr(err) {
		return fmt.Errorf("%s: not every broker answered (the output above is partial): %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func txnLsCmd() *cobra.Command {
	var c groupsConn
	var states []string
	var pids []int64
	cmd := &cobra.Command{
		Use:   "ls [--state S]... [--producer-id N]...",
		Short: "List transactional ids with their coordinator, producer id and state",
		Long: `List every transactional id of the cluster (each broker lists the ids it
coordinates) with its coordinator, producer id and transaction state.
--state (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit,
CompleteAbort, Dead, PrepareEpochFence; any case) and --producer-id keep
the ids in one of the given states or with one of the given producer ids;
both may be repeated or comma separated.`,
		Example: `  strata txn ls
  strata txn ls --state Ongoing,PrepareAbort`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := parseTxnStates(states)
			if err != nil {
				return err
			}
			return c.run(cmd, func(ctx context.Context, adm *kadm.Client) error {
				return runTxnLs(ctx, cmd.OutOrStdout(), adm, st, pids)
			})
		},
	}
	c.register(cmd)
	f := cmd.Flags()
	f.StringSliceVar(&states, "state", nil, "only transactions in this state (repeatable)")
	f.Int64SliceVar(&pids, "producer-id", nil, "only transactions of this producer id (repeatable)")
	return cmd
}

func runTxnLs(ctx context.Context, w io.Writer, adm *kadm.Client, states []string, pids []int64) error {
	listed, err := adm.ListTransactions(ctx, pids, states)
	if err != nil && !partialErr(err) {
		return fmt.Errorf("list transactions: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TRANSACTIONAL-ID\tCOORDINATOR\tPRODUCER-ID\tSTATE")
	for _, l := range listed.Sorted() {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", l.TxnID, l.Coordinator, l.ProducerID, orDash(l.State))
	}
	if ferr := tw.Flush(); ferr != nil {
		return ferr
	}
	if err != nil {
		return shardErr("list transactions", err)
	}
	return nil
}

func txnDescribeCmd() *cobra.Command {
	var c groupsConn
	cmd := &cobra.Command{
		Use:   "describe <transactional-id>...",
		Short: "Show transactions' state, producer id and epoch, timeout, start and partitions",
		Long: `Ask each transactional id's coordinator for its transaction: state, producer
id and epoch, transaction timeout, the start time of the open transaction
and how long it has been open, and the partitions it has added. Unknown ids
are reported (and make the command fail) after the table of known ones.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run(cmd, func(ctx context.Context, adm *kadm.Client) error {
				return runTxnDescribe(ctx, cmd.OutOrStdout(), adm, args, time.Now())
			})
		},
	}
	c.register(cmd)
	return cmd
}

// openTxnState reports whether a transaction in state s is open (its
// start time and duration mean something).
func openTxnState(s string) bool {
	return s == "Ongoing" || s == "PrepareCommit" || s == "PrepareAbort" || s == "PrepareEpochFence"
}

func runTxnDescribe(ctx context.Context, w io.Writer, adm *kadm.Client, ids []string, now time.Time) error {
	var uniq []string
	for _, id := range ids {
		if !slices.Contains(uniq, id) {
			uniq = append(uniq, id)
		}
	}
	described, err := adm.DescribeTransactions(ctx, uniq...)
	if err != nil && !partialErr(err) {
		return fmt.Errorf("describe transactions: %w", err)
	}
	var unknown, failed []string
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TRANSACTIONAL-ID\tCOORDINATOR\tSTATE\tPRODUCER-ID\tEPOCH\tTIMEOUT\tSTART\tDURATION\tPARTITIONS")
	for _, id := range uniq {
		d, ok := described[id]
		switch {
		case !ok:
			failed = append(failed, fmt.Sprintf("%q: no answer", id))
			continue
		case errors.Is(d.Err, kerr.TransactionalIDNotFound):
			unknown = append(unknown, strconv.Quote(id))
			continue
		case d.Err != nil:
			failed = append(failed, fmt.Sprintf("%q: %v", id, d.Err))
			continue
		}
		start, dur := "-", "-"
		if d.StartTimestamp >= 0 {
			start = formatMillis(d.StartTimestamp)
			if openTxnState(d.State) {
				dur = now.Sub(time.UnixMilli(d.StartTimestamp)).Round(time.Second).String()
			}
		}
		timeout := (time.Duration(d.TimeoutMillis) * time.Millisecond).String()
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", id, d.Coordinator, orDash(d.State), d.ProducerID, d.ProducerEpoch,
			timeout, start, dur, orDash(formatTopicsSet(d.Topics)))
	}
	if ferr := tw.Flush(); ferr != nil {
		return ferr
	}
	var errs []error
	if len(unknown) > 0 {
		errs = append(errs, errors.New("unknown transactional id "+strings.Join(unknown, ", ")))
	}
	if len(failed) > 0 {
		errs = append(errs, errors.New("could not describe "+strings.Join(failed, "; ")))
	}
	if err != nil {
		errs = append(errs, shardErr("describe transactions", err))
	}
	return errors.Join(errs...)
}

// formatMillis formats a Unix time in milliseconds as RFC 3339 UTC, "-"
// for a negative (unknown) one.
func formatMillis(ms int64) string {
	if ms < 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// formatTopicsSet is "topic-p,topic-q,…", sorted.
func formatTopicsSet(s kadm.TopicsSet) string {
	var parts []string
	for _, t := range s.Sorted() {
		ps := slices.Clone(t.Partitions)
		slices.Sort(ps)
		for _, p := range ps {
			parts = append(parts, t.Topic+"-"+strconv.Itoa(int(p)))
		}
	}
	return strings.Join(parts, ",")
}

// txnProducersOptions are the flags of `txn producers`.
type txnProducersOptions struct {
	partitions   []int32
	hangingAfter time.Duration
}

func txnProducersCmd() *cobra.Command {
	var c groupsConn
	var o txnProducersOptions
	cmd := &cobra.Command{
		Use:   "producers <topic> [--partition P]...",
		Short: "Show each partition's producers, open transactions and last stable offset",
		Long: `For every partition of a topic (or those given with --partition): its leader,
high watermark (the read_uncommitted end) and last stable offset (the
read_committed end, ListOffsets with isolation read_committed), then the
producers its leader keeps state for, with epoch, last sequence, the time
of their last write, the coordinator epoch of their last transaction marker,
the first offset of their open transaction (TXN-START, "-": none) and its
transactional id as the coordinators list it ("?": none lists it, or the
listing failed).

NOTE marks "holds LSO" on the open transaction whose first offset is the
partition's last stable offset: read_committed consumers (and tiered
uploads) wait for it to end. An open transaction whose producer has not
written for --hanging-after (default: transaction.max.timeout.ms's default,
15m) is marked HANGING: its coordinator should have aborted it by then. For
those, the command prints the "strata txn abort" that would abort them.`,
		Example: `  strata txn producers events
  strata txn producers events --partition 3 --hanging-after 5m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run(cmd, func(ctx context.Context, adm *kadm.Client) error {
				return runTxnProducers(ctx, cmd.OutOrStdout(), adm, args[0], o, time.Now())
			})
		},
	}
	c.register(cmd)
	f := cmd.Flags()
	f.Int32SliceVar(&o.partitions, "partition", nil, "only this partition (repeatable; default: all)")
	f.DurationVar(&o.hangingAfter, "hanging-after", 15*time.Minute, "mark open transactions whose producer has not written for this long as HANGING")
	return cmd
}

// partitionTxns is one partition as `txn producers` shows it.
type partitionTxns struct {
	Partition int32
	Leader    int32
	HighWater int64 // -1: unknown
	Stable    int64 // the last stable offset; -1: unknown
	Producers []kadm.DescribedProducer
	Err       error // describing the partition's producers failed
}

// txnNote is what `txn producers` says about a producer.
type txnNote struct {
	Open     bool          // it has an open transaction
	HoldsLSO bool          // its open transaction's first offset is the last stable offset
	Hanging  bool          // it has not written for the threshold (or longer)
	Idle     time.Duration // since its last write; -1: unknown
}

// classifyProducer says whether p's open transaction holds the partition's
// last stable offset (stable) back and whether it looks hung: its producer
// has not written for hangingAfter (always, when hangingAfter <= 0), as
// Kafka's kafka-transactions.sh find-hanging judges.
func classifyProducer(p kadm.DescribedProducer, stable int64, now time.Time, hangingAfter time.Duration) txnNote {
	n := txnNote{Idle: -1}
	if p.LastTimestamp >= 0 {
		n.Idle = max(now.Sub(time.UnixMilli(p.LastTimestamp)), 0)
	}
	if p.CurrentTxnStartOffset < 0 {
		return n
	}
	n.Open = true
	n.HoldsLSO = stable >= 0 && p.CurrentTxnStartOffset == stable
	n.Hanging = hangingAfter <= 0 || (n.Idle >= 0 && n.Idle >= hangingAfter)
	return n
}

func (n txnNote) String() string {
	var s []string
	if n.HoldsLSO {
		s = append(s, "holds LSO")
	}
	if n.Hanging {
		if n.Idle >= 0 {
			s = append(s, fmt.Sprintf("HANGING (idle %s)", n.Idle.Round(time.Second)))
		} else {
			s = append(s, "HANGING")
		}
	}
	if len(s) == 0 && n.Open {
		s = append(s, "open")
	}
	return orDash(strings.Join(s, ", "))
}

// topicPartitions looks topic up and returns its partitions (only want,
// if given) with their leaders.
func topicPartitions(ctx context.Context, adm *kadm.Client, topic string, want []int32) (map[int32]int32, error) {
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("metadata of topic %q: %w", topic, err)
	}
	td, ok := tds[topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("unknown topic %q", topic)
	}
	if td.Err != nil {
		return nil, fmt.Errorf("metadata of topic %q: %w", topic, td.Err)
	}
	leaders := make(map[int32]int32, len(td.Partitions))
	for p, pd := range td.Partitions {
		if len(want) == 0 || slices.Contains(want, p) {
			leaders[p] = pd.Leader
		}
	}
	for _, p := range want {
		if _, ok := td.Partitions[p]; !ok {
			return nil, fmt.Errorf("topic %q has no partition %d (it has %d)", topic, p, len(td.Partitions))
		}
	}
	return leaders, nil
}

// stableOffsets returns the high watermark and last stable offset of each
// partition of topic (-1 where unknown).
func stableOffsets(ctx context.Context, adm *kadm.Client, topic string) (hw, lso map[int32]int64, err error) {
	// A partition whose leader did not answer (a partial *kadm.ShardErrors)
	// is left out, and so shown as unknown.
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil && !partialErr(err) {
		return nil, nil, fmt.Errorf("list end offsets of %q: %w", topic, err)
	}
	stable, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil && !partialErr(err) {
		return nil, nil, fmt.Errorf("list last stable offsets of %q: %w", topic, err)
	}
	pick := func(l kadm.ListedOffsets) map[int32]int64 {
		out := map[int32]int64{}
		for p, o := range l[topic] {
			if o.Err == nil && p >= 0 {
				out[p] = o.Offset
			} else {
				out[p] = -1
			}
		}
		return out
	}
	return pick(ends), pick(stable), nil
}

// describePartitionTxns gathers what `txn producers` shows.
func describePartitionTxns(ctx context.Context, adm *kadm.Client, topic string, want []int32) ([]partitionTxns, error) {
	leaders, err := topicPartitions(ctx, adm, topic, want)
	if err != nil {
		return nil, err
	}
	set := kadm.TopicsSet{}
	for p := range leaders {
		set.Add(topic, p)
	}
	described, derr := adm.DescribeProducers(ctx, set)
	if derr != nil && described == nil {
		return nil, fmt.Errorf("describe producers of %q: %w", topic, derr)
	}
	hw, lso, err := stableOffsets(ctx, adm, topic)
	if err != nil {
		return nil, err
	}
	var rows []partitionTxns
	for p, leader := range leaders {
		r := partitionTxns{Partition: p, Leader: leader, HighWater: -1, Stable: -1}
		if o, ok := hw[p]; ok {
			r.HighWater = o
		}
		if o, ok := lso[p]; ok {
			r.Stable = o
		}
		d, ok := described[topic].Partitions[p]
		switch {
		case !ok:
			r.Err = fmt.Errorf("no answer from the leader (broker %d)", leader)
			if derr != nil {
				r.Err = fmt.Errorf("no answer from the leader (broker %d): %w", leader, derr)
			}
		case d.Err != nil:
			r.Err = d.Err
			if d.ErrMessage != "" {
				r.Err = fmt.Errorf("%w: %s", d.Err, d.ErrMessage)
			}
		default:
			r.Leader = d.Leader
			r.Producers = d.ActiveProducers.Sorted()
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Partition < rows[j].Partition })
	return rows, nil
}

func runTxnProducers(ctx context.Context, w io.Writer, adm *kadm.Client, topic string, o txnProducersOptions, now time.Time) error {
	rows, err := describePartitionTxns(ctx, adm, topic, o.partitions)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tLEADER\tHIGH-WATERMARK\tLAST-STABLE-OFFSET\tPRODUCERS\tOPEN-TXNS")
	var failed []string
	for _, r := range rows {
		producers, open := "-", "-"
		if r.Err != nil {
			failed = append(failed, fmt.Sprintf("partition %d: %v", r.Partition, r.Err))
		} else {
			n := 0
			for _, p := range r.Producers {
				if p.CurrentTxnStartOffset >= 0 {
					n++
				}
			}
			producers, open = strconv.Itoa(len(r.Producers)), strconv.Itoa(n)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", r.Partition, r.Leader, offsetOrDash(r.HighWater), offsetOrDash(r.Stable), producers, open)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	ids := openTxnIDs(ctx, adm, rows)
	fmt.Fprintln(tw, "PARTITION\tPRODUCER-ID\tEPOCH\tLAST-SEQUENCE\tLAST-TIMESTAMP\tCOORDINATOR-EPOCH\tTXN-START\tTRANSACTIONAL-ID\tNOTE")
	var hints []string
	for _, r := range rows {
		for _, p := range r.Producers {
			n := classifyProducer(p, r.Stable, now, o.hangingAfter)
			txnID := "-"
			if n.Open {
				txnID = "?"
				if l, ok := ids[p.ProducerID]; ok {
					txnID = l.TxnID
				}
			}
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%s\t%d\t%s\t%s\t%s\n", r.Partition, p.ProducerID, p.ProducerEpoch, p.LastSequence,
				formatMillis(p.LastTimestamp), p.CoordinatorEpoch, offsetOrDash(p.CurrentTxnStartOffset), txnID, n)
			if n.Hanging {
				hints = append(hints, fmt.Sprintf("  strata txn abort --topic %s --partition %d --start-offset %d   # producer %d%s",
					topic, r.Partition, p.CurrentTxnStartOffset, p.ProducerID, coordinatorView(ids, p.ProducerID)))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(hints) > 0 {
		fmt.Fprintf(w, "\n%d open transaction(s) look hung (no write for %s or more). Make sure their application is gone, then abort them with:\n%s\n",
			len(hints), o.hangingAfter, strings.Join(hints, "\n"))
	}
	if len(failed) > 0 {
		return fmt.Errorf("describe producers of %q: %s", topic, strings.Join(failed, "; "))
	}
	return nil
}

// openTxnIDs maps the producer ids of rows' open transactions to their
// transactional ids, asking the coordinators (ListTransactions filtered by
// producer id). It is nil when none is open or the listing failed: the
// TRANSACTIONAL-ID column then shows "?" (a transaction its coordinator
// does not list is also "?": the coordinator lost track of it).
func openTxnIDs(ctx context.Context, adm *kadm.Client, rows []partitionTxns) map[int64]kadm.ListedTransaction {
	var pids []int64
	for _, r := range rows {
		for _, p := range r.Producers {
			if p.CurrentTxnStartOffset >= 0 && !slices.Contains(pids, p.ProducerID) {
				pids = append(pids, p.ProducerID)
			}
		}
	}
	if len(pids) == 0 {
		return nil
	}
	listed, err := adm.ListTransactions(ctx, pids, nil)
	if err != nil && !partialErr(err) {
		return nil
	}
	out := make(map[int64]kadm.ListedTransaction, len(listed))
	for _, l := range listed {
		out[l.ProducerID] = l
	}
	return out
}

// coordinatorView is what the coordinators say of producer pid, for a
// hint: its transactional id and state, or that none lists it.
func coordinatorView(ids map[int64]kadm.ListedTransaction, pid int64) string {
	if ids == nil {
		return ""
	}
	l, ok := ids[pid]
	if !ok {
		return ", unknown to every coordinator"
	}
	return fmt.Sprintf(", transactional id %s (%s at its coordinator)", l.TxnID, orDash(l.State))
}

// txnAbortOptions are the flags of `txn abort`. The have* fields say which
// of the optional flags were given.
type txnAbortOptions struct {
	topic            string
	partition        int32
	startOffset      int64
	producerID       int64
	producerEpoch    int16
	coordinatorEpoch int32

	havePartition, haveStart, haveProducerID, haveProducerEpoch, haveCoordinatorEpoch bool
}

// validate checks that the partition and exactly one way of naming the
// transaction are given.
func (o txnAbortOptions) validate() error {
	switch {
	case o.topic == "":
		return errors.New("--topic is required")
	case !o.havePartition:
		return errors.New("--partition is required")
	case o.partition < 0:
		return fmt.Errorf("--partition %d: want >= 0", o.partition)
	}
	explicit := o.haveProducerID || o.haveProducerEpoch || o.haveCoordinatorEpoch
	switch {
	case o.haveStart && explicit:
		return errors.New("give either --start-offset, or --producer-id, --producer-epoch and --coordinator-epoch, not both")
	case o.haveStart:
		if o.startOffset < 0 {
			return fmt.Errorf("--start-offset %d: want >= 0", o.startOffset)
		}
		return nil
	case !explicit:
		return errors.New("give either --start-offset, or --producer-id, --producer-epoch and --coordinator-epoch")
	case !o.haveProducerID || !o.haveProducerEpoch || !o.haveCoordinatorEpoch:
		return errors.New("--producer-id, --producer-epoch and --coordinator-epoch go together: give all three")
	case o.producerID < 0:
		return fmt.Errorf("--producer-id %d: want >= 0", o.producerID)
	case o.producerEpoch < 0:
		return fmt.Errorf("--producer-epoch %d: want >= 0", o.producerEpoch)
	case o.coordinatorEpoch < 0:
		return fmt.Errorf("--coordinator-epoch %d: want >= 0", o.coordinatorEpoch)
	}
	return nil
}

func txnAbortCmd() *cobra.Command {
	var c groupsConn
	var o txnAbortOptions
	cmd := &cobra.Command{
		Use:   "abort --topic T --partition P (--start-offset O | --producer-id N --producer-epoch E --coordinator-epoch C)",
		Short: "Abort a hanging transaction on one partition (writes an abort marker)",
		Long: `Abort an open transaction on one partition by writing an abort marker to
the partition's leader (WriteTxnMarkers), as Kafka's
kafka-transactions.sh abort does. Its records become invisible to
read_committed consumers and the last stable offset moves past it.

With --start-offset, the producer is the one whose open transaction starts
at that offset on the partition (see "strata txn producers"); its producer
id, epoch and last coordinator epoch are used. The command refuses when no
open transaction starts there. Alternatively give the producer id, producer
epoch and coordinator epoch yourself; they are sent as given.

Only the given partition is aborted, and the transaction's coordinator is
not told: use this for transactions their coordinator lost track of, or
whose producer is gone for good. Make sure it is gone: a live producer is
not fenced by the marker, and if it goes on and commits, what it wrote to
this partition before the abort stays aborted.`,
		Example: `  strata txn abort --topic events --partition 0 --start-offset 1234
  strata txn abort --topic events --partition 0 --producer-id 1001 --producer-epoch 3 --coordinator-epoch 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			o.havePartition, o.haveStart = f.Changed("partition"), f.Changed("start-offset")
			o.haveProducerID, o.haveProducerEpoch, o.haveCoordinatorEpoch = f.Changed("producer-id"), f.Changed("producer-epoch"), f.Changed("coordinator-epoch")
			if err := o.validate(); err != nil {
				return err
			}
			return c.run(cmd, func(ctx context.Context, adm *kadm.Client) error {
				return runTxnAbort(ctx, cmd.OutOrStdout(), adm, o)
			})
		},
	}
	c.register(cmd)
	f := cmd.Flags()
	f.StringVar(&o.topic, "topic", "", "the topic of the partition (required)")
	f.Int32Var(&o.partition, "partition", -1, "the partition (required)")
	f.Int64Var(&o.startOffset, "start-offset", -1, "abort the open transaction that starts at this offset")
	f.Int64Var(&o.producerID, "producer-id", -1, "the producer id of the transaction to abort")
	f.Int16Var(&o.producerEpoch, "producer-epoch", -1, "its producer epoch")
	f.Int32Var(&o.coordinatorEpoch, "coordinator-epoch", -1, "the coordinator epoch to write the marker with")
	return cmd
}

// abortTarget is the transaction `txn abort` writes an abort marker for.
type abortTarget struct {
	ProducerID       int64
	ProducerEpoch    int16
	CoordinatorEpoch int32
}

// findAbortTarget picks, among a partition's producers, the one whose open
// transaction starts at start. Like Kafka, a producer without a marker yet
// (coordinator epoch -1) gets coordinator epoch 0.
func findAbortTarget(producers []kadm.DescribedProducer, start int64) (abortTarget, error) {
	var open []string
	for _, p := range producers {
		if p.CurrentTxnStartOffset == start {
			return abortTarget{ProducerID: p.ProducerID, ProducerEpoch: p.ProducerEpoch, CoordinatorEpoch: max(p.CoordinatorEpoch, 0)}, nil
		}
		if p.CurrentTxnStartOffset >= 0 {
			open = append(open, fmt.Sprintf("%d (producer %d)", p.CurrentTxnStartOffset, p.ProducerID))
		}
	}
	if len(open) == 0 {
		return abortTarget{}, fmt.Errorf("no open transaction starts at offset %d: the partition has no open transaction", start)
	}
	return abortTarget{}, fmt.Errorf("no open transaction starts at offset %d; open transactions start at %s", start, strings.Join(open, ", "))
}

// abortMarkerErr explains a WriteTxnMarkers error code.
func abortMarkerErr(err error, t abortTarget) error {
	switch {
	case errors.Is(err, kerr.InvalidProducerEpoch):
		return fmt.Errorf("%w: producer epoch %d is older than the partition's epoch for producer %d (the producer has moved on; see strata txn producers)", err, t.ProducerEpoch, t.ProducerID)
	case errors.Is(err, kerr.TransactionCoordinatorFenced):
		return fmt.Errorf("%w: coordinator epoch %d is older than the one of producer %d's last marker (see COORDINATOR-EPOCH in strata txn producers)", err, t.CoordinatorEpoch, t.ProducerID)
	}
	return err
}

func runTxnAbort(ctx context.Context, w io.Writer, adm *kadm.Client, o txnAbortOptions) error {
	tp := fmt.Sprintf("%s-%d", o.topic, o.partition)
	rows, err := describePartitionTxns(ctx, adm, o.topic, []int32{o.partition})
	if err != nil {
		return fmt.Errorf("abort on %s: %w", tp, err)
	}
	before := rows[0]
	t := abortTarget{ProducerID: o.producerID, ProducerEpoch: o.producerEpoch, CoordinatorEpoch: o.coordinatorEpoch}
	if o.haveStart {
		if before.Err != nil {
			return fmt.Errorf("abort on %s: describe producers: %w", tp, before.Err)
		}
		if t, err = findAbortTarget(before.Producers, o.startOffset); err != nil {
			return fmt.Errorf("abort on %s: %w", tp, err)
		}
	}
	resp, err := adm.WriteTxnMarkers(ctx, kadm.TxnMarkers{
		ProducerID: t.ProducerID, ProducerEpoch: t.ProducerEpoch, CoordinatorEpoch: t.CoordinatorEpoch,
		Commit: false, Topics: kadm.TopicsSet{o.topic: {o.partition: {}}},
	})
	if err != nil {
		return fmt.Errorf("abort on %s: write transaction marker: %w", tp, err)
	}
	pr, ok := resp[t.ProducerID].Topics[o.topic].Partitions[o.partition]
	if !ok {
		return fmt.Errorf("abort on %s: write transaction marker: the leader did not answer for the partition", tp)
	}
	if pr.Err != nil {
		return fmt.Errorf("abort on %s: write transaction marker on broker %d: %w", tp, pr.NodeID, abortMarkerErr(pr.Err, t))
	}
	fmt.Fprintf(w, "aborted the transaction of producer %d (epoch %d, coordinator epoch %d) on %s: abort marker written by broker %d\n",
		t.ProducerID, t.ProducerEpoch, t.CoordinatorEpoch, tp, pr.NodeID)
	hw, lso, err := stableOffsets(ctx, adm, o.topic)
	if err != nil {
		return fmt.Errorf("abort on %s: the marker is written, but: %w", tp, err)
	}
	fmt.Fprintf(w, "last stable offset %s -> %s, high watermark %s\n",
		offsetOrDash(before.Stable), offsetOrDash(offsetAt(lso, o.partition)), offsetOrDash(offsetAt(hw, o.partition)))
	return nil
}

// offsetAt is m[p], -1 when absent.
func offsetAt(m map[int32]int64, p int32) int64 {
	if o, ok := m[p]; ok {
		return o
	}
	return -1
}
