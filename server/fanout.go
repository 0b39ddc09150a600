package server

import (
	"context"
	"log/slog"
	"strconv"
	"sync"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// hub shares one repo.Follow per conversation among the event streams
// that are caught up with it, so an append costs one store read however
// many clients follow the conversation, and each event is encoded once.
//
// The feed never waits for a stream: it hands each event to every
// subscriber's buffered channel without blocking, and a subscriber whose
// buffer is full is cut off (its channel closed). A cut-off stream reads
// what it missed from the store by itself, then subscribes again, so a
// slow client costs store reads of its own and delays nobody.
type hub struct {
	repo repo.Repo
	log  *slog.Logger
	// ctx ends every feed (server shutdown).
	ctx    context.Context
	buffer int // each subscriber's channel capacity

	mu    sync.Mutex
	feeds map[string]*feed
	wg    sync.WaitGroup // running feeds
}

// feed follows one conversation for its subscribers.
type feed struct {
	subs   map[*subscriber]struct{} // guarded by hub.mu
	cancel context.CancelFunc
}

// subscriber is one stream's place in a feed.
type subscriber struct {
	cid string
	// ch receives the feed's events in seq order. The feed closes it when
	// it cuts the subscriber off or ends.
	ch chan message
}

// message is one event as a server-sent event ("id: <seq>\ndata:
// <JSON>\n\n"), shared read-only by every stream that sends it.
type message struct {
	seq   int64
	frame []byte
}

func newHub(r repo.Repo, log *slog.Logger, ctx context.Context, buffer int) *hub {
	return &hub{repo: r, log: log, ctx: ctx, buffer: buffer, feeds: make(map[string]*feed)}
}

// encodeEvent encodes e as a server-sent event.
func encodeEvent(e events.Event) (message, error) {
	b, err := e.MarshalJSON()
	if err != nil {
		return message{}, err
	}
	frame := make([]byte, 0, len(b)+32)
	frame = strconv.AppendInt(append(frame, "id: "...), e.Seq, 10)
	frame = append(append(append(frame, "\ndata: "...), b...), "\n\n"...)
	return message{seq: e.Seq, frame: frame}, nil
}

// subscribe registers a subscriber for cid's events. Every event
// committed after subscribe returns reaches the subscriber's channel
// (unless it is cut off); events committed before may or may not, so the
// caller reads the store from its position after subscribing and skips
// what it has already sent.
func (h *hub) subscribe(ctx context.Context, cid string) (*subscriber, error) {
	s := &subscriber{cid: cid, ch: make(chan message, h.buffer)}
	h.mu.Lock()
	if f, ok := h.feeds[cid]; ok {
		f.subs[s] = struct{}{}
		h.mu.Unlock()
		return s, nil
	}
	h.mu.Unlock()

	// A new feed starts after the head read here, before the subscriber
	// registers: what it does not send was committed before the caller
	// reads the store.
	head, err := h.repo.Head(ctx, cid)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if f, ok := h.feeds[cid]; ok { // another stream started one meanwhile
		f.subs[s] = struct{}{}
		return s, nil
	}
	if err := h.ctx.Err(); err != nil {
		return nil, err // shutting down: no new feeds
	}
	fctx, cancel := context.WithCancel(h.ctx)
	f := &feed{subs: map[*subscriber]struct{}{s: {}}, cancel: cancel}
	h.feeds[cid] = f
	h.wg.Add(1)
	go h.run(fctx, cid, f, head)
	return s, nil
}

// unsubscribe removes s from its feed (if the feed has not cut it off
// already), ending the feed when it was the last subscriber.
func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.feeds[s.cid]
	if !ok {
		return
	}
	if _, ok := f.subs[s]; !ok {
		return
	}
	delete(f.subs, s)
	close(s.ch)
	if len(f.subs) == 0 {
		h.remove(s.cid, f)
	}
}

// remove ends feed f of cid. h.mu must be held.
func (h *hub) remove(cid string, f *feed) {
	if h.feeds[cid] == f {
		delete(h.feeds, cid)
	}
	f.cancel()
}

// run follows the conversation after head and hands each event to the
// feed's subscribers until the feed is removed or the store fails.
func (h *hub) run(ctx context.Context, cid string, f *feed, head int64) {
	defer h.wg.Done()
	for e, err := range h.repo.Follow(ctx, cid, head) {
		if err == nil {
			var m message
			if m, err = encodeEvent(e); err == nil {
				h.broadcast(cid, f, m)
				continue
			}
		}
		h.log.Warn("event feed failed; its streams read the store themselves",
			slog.String("conversation_id", cid), slog.Any("error", err))
		break
	}
	// Ended: the subscribers left, the server is stopping, or the store
	// failed. Whoever is still subscribed is cut off.
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range f.subs {
		delete(f.subs, s)
		close(s.ch)
	}
	h.remove(cid, f)
}

// broadcast hands m to every subscriber of f without waiting: one whose
// buffer is full is cut off.
func (h *hub) broadcast(cid string, f *feed, m message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range f.subs {
		select {
		case s.ch <- m:
		default:
			delete(f.subs, s)
			close(s.ch)
		}
	}
	if len(f.subs) == 0 {
		h.remove(cid, f)
	}
}

// wait waits for every feed to end (after the hub's context is done).
func (h *hub) wait() { h.wg.Wait() }
