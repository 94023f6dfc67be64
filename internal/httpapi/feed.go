package httpapi

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/presenced/presenced/internal/presence"
)

// feed fans the transitions stream out to the event streams (SSE) of this
// instance.
//
// Why not one blocking XREAD per stream: a blocked XREAD holds a pooled
// Redis connection for its whole wait, so a few dozen SSE clients would
// exhaust the pool and starve the heartbeat. Instead one goroutine per
// instance holds the only blocking read; when it sees transitions it keeps
// them as a batch (with the positions before and after it, and the SSE
// frames already encoded) and wakes every stream. A stream that stands at a
// batch's start position takes it as is (no Redis call, no encoding); one
// that stands anywhere else (resuming from Last-Event-ID, or behind) reads
// from its own position with a non-blocking XREAD. Every stream moves only
// from its own position, so nothing is lost or sent twice, whatever the
// timing of the wake-ups.
//
// The goroutine lives while streams are subscribed: the first subscriber
// starts it, and it returns within one blocking read after the last one
// leaves.
type feed struct {
	store presence.Store
	log   *slog.Logger
	// block is how long one read of the feed waits for a transition.
	block time.Duration
	// timeout bounds each Redis call beyond its blocking time.
	timeout time.Duration
	// reads bounds how many streams read Redis at once (catching up after a
	// resume), so that many streams never crowd the connection pool.
	reads chan struct{}

	mu      sync.Mutex
	subs    int
	running bool
	// wake is closed (and replaced) whenever a batch is published.
	wake chan struct{}
	// head is the feed's position: everything before it was published.
	head string
	// recent are the latest batches, oldest first.
	recent []*feedBatch
}

// feedBatch is transitions read by the feed in one XREAD.
type feedBatch struct {
	// from and to are the stream positions before and after the batch.
	from, to string
	count    int
	// frames are the batch's SSE events, encoded once for every stream.
	frames []byte
}

// Feed tuning.
const (
	// feedBatchSize is the most transitions one read returns.
	feedBatchSize = 500
	// feedRecent is how many batches the feed keeps for streams that are a
	// little behind.
	feedRecent = 64
	// feedConcurrentReads is how many streams may read Redis at once.
	feedConcurrentReads = 4
)

func newFeed(store presence.Store, log *slog.Logger, block, timeout time.Duration) *feed {
	return &feed{
		store: store, log: log, block: block, timeout: timeout,
		reads: make(chan struct{}, feedConcurrentReads),
		wake:  make(chan struct{}),
	}
}

// subscribe registers a stream, starting the feed if it is idle, and
// returns the function that unregisters it.
func (f *feed) subscribe() (unsubscribe func()) {
	f.mu.Lock()
	f.subs++
	if !f.running {
		f.running = true
		f.head, f.recent = "", nil
		go f.run()
	}
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.subs--
			f.mu.Unlock()
		})
	}
}

// state returns the channel closed at the next publication and the feed's
// head. A stream gets both before it catches up, so a batch published while
// it reads still wakes it.
func (f *feed) state() (<-chan struct{}, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wake, f.head
}

// batchFrom returns the kept batch that starts at pos, if any.
func (f *feed) batchFrom(pos string) *feedBatch {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.recent {
		if b.from == pos {
			return b
		}
	}
	return nil
}

// run reads the stream until no stream is subscribed.
func (f *feed) run() {
	pos := "$" // resolved by the store to the current end on the first read
	backoff := 50 * time.Millisecond
	for {
		if f.idle() {
			return
		}

		// The first read only resolves "$" to the current end, without
		// waiting, so that the head is known at once.
		block := f.block
		if pos == "$" {
			block = 0
		}
		ctx, cancel := context.WithTimeout(context.Background(), block+f.timeout)
		trs, next, err := f.store.ReadTransitions(ctx, pos, feedBatchSize, block)
		cancel()
		if err != nil {
			if f.idle() {
				return // the last stream left (at shutdown Redis may be closing)
			}
			// The streams notice an unreachable store themselves (their
			// session checks fail); the feed only retries.
			f.log.LogAttrs(context.Background(), slog.LevelWarn, "event feed: read transitions", slog.String("error", err.Error()))
			time.Sleep(backoff)
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		if len(trs) > 0 {
			f.publish(&feedBatch{from: pos, to: next, count: len(trs), frames: appendEvents(nil, trs)})
		} else if pos != next {
			f.mu.Lock()
			f.head = next
			f.mu.Unlock()
		}
		pos = next
	}
}

// idle reports whether no stream is subscribed, and if so marks the feed
// stopped (the caller returns): the next subscriber starts a new run.
func (f *feed) idle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == 0 {
		f.running = false
		return true
	}
	return false
}

// publish keeps b and wakes every stream.
func (f *feed) publish(b *feedBatch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.recent) == feedRecent {
		copy(f.recent, f.recent[1:])
		f.recent = f.recent[:feedRecent-1]
	}
	f.recent = append(f.recent, b)
	f.head = b.to
	close(f.wake)
	f.wake = make(chan struct{})
}

// read reads the transitions after pos without waiting, as one of at most
// feedConcurrentReads concurrent readers, within the Redis timeout.
func (f *feed) read(ctx context.Context, pos string) ([]presence.Transition, string, error) {
	select {
	case f.reads <- struct{}{}:
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
	defer func() { <-f.reads }()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	return f.store.ReadTransitions(ctx, pos, feedBatchSize, 0)
}
