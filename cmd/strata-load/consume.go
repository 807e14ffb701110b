package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// adminTimeout bounds each admin request (topic creation, offset listing).
const adminTimeout = 2 * time.Minute

// consumeStats is the outcome of a consume phase.
type consumeStats struct {
	records int64
	bytes   int64 // key and value bytes
	elapsed time.Duration
}

// withAdmin runs fn with a kadm client on the given brokers.
func withAdmin(ctx context.Context, seeds []string, fn func(context.Context, *kadm.Client) error) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return fmt.Errorf("new admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(adminTimeout / time.Millisecond))
	ctx, cancel := context.WithTimeout(ctx, adminTimeout+10*time.Second)
	defer cancel()
	return fn(ctx, adm)
}

// createTopics creates topics with the given partition count and
// replication factor 1.
func createTopics(ctx context.Context, seeds []string, partitions int32, topics ...string) error {
	return withAdmin(ctx, seeds, func(ctx context.Context, adm *kadm.Client) error {
		resp, err := adm.CreateTopics(ctx, partitions, 1, nil, topics...)
		if err != nil {
			return fmt.Errorf("create topics: %w", err)
		}
		if err := resp.Error(); err != nil {
			return fmt.Errorf("create topics: %w", err)
		}
		return nil
	})
}

// deleteTopics deletes topics.
func deleteTopics(ctx context.Context, seeds []string, topics ...string) error {
	return withAdmin(ctx, seeds, func(ctx context.Context, adm *kadm.Client) error {
		resp, err := adm.DeleteTopics(ctx, topics...)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return fmt.Errorf("delete topics: %w", err)
		}
		return nil
	})
}

// countRecords returns the number of offsets between the start and end of
// every partition of the topics.
func countRecords(ctx context.Context, seeds []string, topics ...string) (int64, error) {
	var total int64
	err := withAdmin(ctx, seeds, func(ctx context.Context, adm *kadm.Client) error {
		starts, err := adm.ListStartOffsets(ctx, topics...)
		if err == nil {
			err = starts.Error()
		}
		if err != nil {
			return fmt.Errorf("list start offsets: %w", err)
		}
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return fmt.Errorf("list end offsets: %w", err)
		}
		ends.Each(func(e kadm.ListedOffset) {
			s, _ := starts.Lookup(e.Topic, e.Partition)
			total += e.Offset - s.Offset
		})
		return nil
	})
	return total, err
}

// consume reads every record of the topics from the start of the log and
// stops when it has seen as many records as the logs hold, on the first
// fetch error, or after timeout.
func consume(ctx context.Context, seeds []string, timeout time.Duration, topics ...string) (consumeStats, error) {
	return consumeWith(ctx, seeds, timeout, nil, topics...)
}

// consumeWith is consume with extra client options.
func consumeWith(ctx context.Context, seeds []string, timeout time.Duration, extra []kgo.Opt, topics ...string) (consumeStats, error) {
	want, err := countRecords(ctx, seeds, topics...)
	if err != nil {
		return consumeStats{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, extra...)...)
	if err != nil {
		return consumeStats{}, fmt.Errorf("new consumer: %w", err)
	}
	defer cl.Close()

	var st consumeStats
	start := time.Now()
	for st.records < want {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			st.elapsed = time.Since(start)
			return st, fmt.Errorf("consumed %d of %d records: %w", st.records, want, err)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("%s[%d]: %w", t, p, err))
		})
		if ferr != nil {
			st.elapsed = time.Since(start)
			return st, fmt.Errorf("fetch after %d of %d records: %w", st.records, want, ferr)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			st.records++
			st.bytes += int64(len(r.Key) + len(r.Value))
		})
	}
	st.elapsed = time.Since(start)
	return st, nil
}

// mbps returns the consumed MB/s (10^6 bytes).
func (s consumeStats) mbps() float64 { return rate(float64(s.bytes)/1e6, s.elapsed) }

// recps returns the consumed records per second.
func (s consumeStats) recps() float64 { return rate(float64(s.records), s.elapsed) }
