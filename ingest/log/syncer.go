package log

import (
	"log/slog"
	"sync"
)

// Syncer is the group-commit pool shared by the logs of a broker. A log with
// unsynced appends schedules itself once; a worker then runs one sync round
// for it, which covers every append made before the round captured the log's
// end, so one fdatasync serves all producers and waiters of that log. The
// queue holds each log at most once, so it is bounded by the number of logs.
// Safe for concurrent use.
type Syncer struct {
	logger *slog.Logger
	mu     struct {
		sync.Mutex
		queue  []*Log
		closed bool
	}
	cond *sync.Cond
	wg   sync.WaitGroup
}

// NewSyncer starts a pool of workers (at least 1) syncing logs.
func NewSyncer(logger *slog.Logger, workers int) *Syncer {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Syncer{logger: logger}
	s.cond = sync.NewCond(&s.mu)
	for range max(workers, 1) {
		s.wg.Add(1)
		go s.work()
	}
	return s
}

// schedule queues l for a sync round. It reports false if the Syncer is
// closed; the caller then syncs inline. Must not block.
func (s *Syncer) schedule(l *Log) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return false
	}
	s.mu.queue = append(s.mu.queue, l)
	s.cond.Signal()
	return true
}

func (s *Syncer) work() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		for len(s.mu.queue) == 0 && !s.mu.closed {
			s.cond.Wait()
		}
		if len(s.mu.queue) == 0 {
			s.mu.Unlock()
			return
		}
		l := s.mu.queue[0]
		s.mu.queue[0] = nil
		s.mu.queue = s.mu.queue[1:]
		s.mu.Unlock()
		l.syncScheduled()
	}
}

// Close syncs the logs still queued, then stops the workers. Logs that
// append afterwards sync inline.
func (s *Syncer) Close() {
	s.mu.Lock()
	s.mu.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	s.wg.Wait()
}
