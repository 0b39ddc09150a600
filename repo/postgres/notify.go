package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifier wakes followers of a conversation when its events commit, in
// this process (the writer wakes them after its commit) or in another
// replica (the listener wakes them when that replica's notification
// arrives).
type notifier struct {
	mu    sync.Mutex
	chans map[string]chan struct{}

	// pending are the conversations whose commits other replicas have
	// not been told about yet (see publish); kick wakes the publisher.
	pending map[string]struct{}
	kick    chan struct{}
	stopped chan struct{}
	quit    chan struct{}
}

// wait returns a channel closed at the next commit to conversationID.
// Take it before reading, so a commit between the read and the wait is
// never missed.
func (n *notifier) wait(conversationID string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.chans == nil {
		n.chans = make(map[string]chan struct{})
	}
	ch, ok := n.chans[conversationID]
	if !ok {
		ch = make(chan struct{})
		n.chans[conversationID] = ch
	}
	return ch
}

func (n *notifier) wake(conversationIDs map[string]struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id := range conversationIDs {
		if ch, ok := n.chans[id]; ok {
			close(ch)
			delete(n.chans, id)
		}
	}
}

func (n *notifier) wakeOne(conversationID string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ch, ok := n.chans[conversationID]; ok {
		close(ch)
		delete(n.chans, conversationID)
	}
}

// wakeAll wakes every follower: after notifications may have been lost.
func (n *notifier) wakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, ch := range n.chans {
		close(ch)
		delete(n.chans, id)
	}
}

// maxPayload keeps a notification under PostgreSQL's limit of 8000 bytes;
// maxPayloads is how many one flush sends before it names no
// conversation and wakes every follower instead ("*").
const (
	maxPayload  = 7900
	maxPayloads = 16
)

// channelName is the notification channel of a schema: short whatever the
// schema's name (channel names are identifiers, at most 63 bytes).
func channelName(schema string) string {
	h := fnv.New32a()
	h.Write([]byte(schema))
	return fmt.Sprintf("chatlog_%08x", h.Sum32())
}

// startPublisher starts the goroutine that tells other replicas about
// this process's commits.
func (r *Repo) startPublisher() {
	n := &r.notify
	n.kick = make(chan struct{}, 1)
	n.stopped = make(chan struct{})
	n.quit = make(chan struct{})
	go r.publishLoop()
}

// publish queues a notification for other replicas about the
// conversations a commit touched. It never waits for the database: the
// appends it follows are acknowledged already, and followers elsewhere
// fall back to polling if the notification is lost.
func (r *Repo) publish(touched map[string]struct{}) {
	n := &r.notify
	if n.kick == nil {
		return
	}
	n.mu.Lock()
	if n.pending == nil {
		n.pending = make(map[string]struct{})
	}
	for id := range touched {
		n.pending[id] = struct{}{}
	}
	n.mu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// publishLoop sends what publish queued, merging the commits made while
// the previous notification was on its way, until stop.
func (r *Repo) publishLoop() {
	n := &r.notify
	defer close(n.stopped)
	channel := channelName(r.schema)
	for {
		select {
		case <-n.kick:
		case <-n.quit:
			r.sendNotifications(channel) // what the last commits queued
			return
		}
		r.sendNotifications(channel)
	}
}

func (r *Repo) sendNotifications(channel string) {
	n := &r.notify
	n.mu.Lock()
	pending := n.pending
	n.pending = nil
	n.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	var payloads []string
	var b strings.Builder
	flush := func() {
		if b.Len() > len(r.instance) {
			payloads = append(payloads, b.String())
		}
		b.Reset()
		b.WriteString(r.instance)
	}
	b.WriteString(r.instance)
	for id := range pending {
		if b.Len()+1+len(id) > maxPayload {
			flush()
		}
		b.WriteByte('\n')
		b.WriteString(id)
	}
	flush()
	if len(payloads) > maxPayloads {
		payloads = []string{r.instance + "\n*"}
	}
	// Notifications need no durability: synchronous_commit off spares
	// this transaction the fsync its commit would wait for.
	batch := &pgx.Batch{}
	batch.Queue("BEGIN")
	batch.Queue("SET LOCAL synchronous_commit = off")
	for _, p := range payloads {
		batch.Queue(qNotify, channel, p)
	}
	batch.Queue("COMMIT")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := r.pool.Acquire(ctx)
	if err != nil {
		r.opts.Logger.Warn("postgres: notify other replicas", "err", err)
		return
	}
	defer c.Release()
	if err := c.SendBatch(ctx, batch).Close(); err != nil {
		r.opts.Logger.Warn("postgres: notify other replicas", "err", err)
		if c.Conn().PgConn().TxStatus() != 'I' {
			c.Conn().Exec(ctx, "ROLLBACK")
		}
		return
	}
	r.stats.notified.Add(int64(len(payloads)))
}

func (n *notifier) stop() {
	if n.quit == nil {
		return
	}
	close(n.quit)
	<-n.stopped
}

// listener holds a connection of its own that LISTENs for other
// replicas' notifications and wakes this process's followers.
type listener struct {
	r       *Repo
	cfg     *pgx.ConnConfig
	channel string
	cancel  context.CancelFunc
	done    chan struct{}
}

func newListener(r *Repo, cfg *pgx.ConnConfig) *listener {
	return &listener{r: r, cfg: cfg}
}

// start connects and listens before returning, so that a follower that
// starts once Open returned misses no notification.
func (l *listener) start(ctx context.Context) error {
	l.channel = channelName(l.r.schema)
	conn, err := l.connect(ctx)
	if err != nil {
		return fmt.Errorf("postgres: listen for other replicas' commits: %w", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan struct{})
	go l.run(lctx, conn)
	return nil
}

func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, l.cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return conn, nil
}

func (l *listener) run(ctx context.Context, conn *pgx.Conn) {
	defer close(l.done)
	r := l.r
	backoff := 100 * time.Millisecond
	for {
		if conn == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			var err error
			if conn, err = l.connect(ctx); err != nil {
				if ctx.Err() == nil {
					r.opts.Logger.Warn("postgres: reconnect the listener", "err", err, "retry_in", backoff)
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
			// Whatever was notified while it was away is lost: every
			// follower reads again.
			r.notify.wakeAll()
		}
		nt, err := conn.WaitForNotification(ctx)
		if err != nil {
			conn.Close(context.Background())
			conn = nil
			if ctx.Err() != nil {
				return
			}
			r.opts.Logger.Warn("postgres: the listener lost its connection", "err", err)
			r.notify.wakeAll()
			continue
		}
		from, ids, _ := strings.Cut(nt.Payload, "\n")
		if from == r.instance {
			continue // this process's own commits woke its followers already
		}
		r.stats.heard.Add(1)
		for id := range strings.SplitSeq(ids, "\n") {
			if id == "*" {
				r.notify.wakeAll()
				break
			}
			r.notify.wakeOne(id)
		}
	}
}

func (l *listener) stop() {
	l.cancel()
	<-l.done
}
