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
// replica (the listener wakes them when the NOTIFY that replica's commit
// carried arrives).
type notifier struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
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

// maxPayload keeps a notification under PostgreSQL's limit of 8000
// bytes: a commit touching more conversations than fit names none, and
// wakes every follower instead ("*").
const maxPayload = 7900

// channelName is the notification channel of a schema: short whatever the
// schema's name (channel names are identifiers, at most 63 bytes).
func channelName(schema string) string {
	h := fnv.New32a()
	h.Write([]byte(schema))
	return fmt.Sprintf("chatlog_%08x", h.Sum32())
}

// notification is the payload telling other replicas which conversations
// a commit touched: this Repo's instance id, then the ids, one a line.
func (r *Repo) notification(touched map[string]struct{}) string {
	var b strings.Builder
	b.WriteString(r.instance)
	for id := range touched {
		if b.Len()+1+len(id) > maxPayload {
			return r.instance + "\n*"
		}
		b.WriteByte('\n')
		b.WriteString(id)
	}
	return b.String()
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
