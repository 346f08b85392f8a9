package registry

import (
	"container/list"
	"math"
	"sync"
	"time"
)

// LoginLimit bounds failed logins per client address with a token bucket:
// a client may fail Failures times in a row, then earns one more try every
// Window/Failures. Written by hand: x/time/rate is one bucket, and the
// per-address table with bounded memory is the part that matters here.
type LoginLimit struct {
	// Failures is the burst of failed logins allowed; 0 disables limiting.
	Failures int
	// Window is how long a client's budget takes to refill completely.
	Window time.Duration
	// MaxClients bounds the addresses remembered; the least recently
	// failing ones are forgotten first (default 10000).
	MaxClients int
}

// loginLimiter is LoginLimit's state: one bucket per client address, in a
// least-recently-failed list so that memory stays bounded under a spray of
// addresses.
type loginLimiter struct {
	limit LoginLimit
	now   func() time.Time

	mu      sync.Mutex
	clients map[string]*list.Element
	lru     list.List // of *bucket, most recent failure at the front
}

type bucket struct {
	addr   string
	tokens float64
	at     time.Time
}

func newLoginLimiter(l LoginLimit, now func() time.Time) *loginLimiter {
	if l.MaxClients <= 0 {
		l.MaxClients = 10000
	}
	if l.Window <= 0 {
		l.Window = time.Minute
	}
	return &loginLimiter{limit: l, now: now, clients: map[string]*list.Element{}}
}

func (l *loginLimiter) enabled() bool { return l != nil && l.limit.Failures > 0 }

// refill brings b's tokens up to date.
func (l *loginLimiter) refill(b *bucket, now time.Time) {
	rate := float64(l.limit.Failures) / l.limit.Window.Seconds()
	b.tokens = math.Min(float64(l.limit.Failures), b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
}

// blocked reports whether addr has no try left, and how long until it has.
func (l *loginLimiter) blocked(addr string) (bool, time.Duration) {
	if !l.enabled() {
		return false, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.clients[addr]
	if !ok {
		return false, 0
	}
	b := e.Value.(*bucket)
	l.refill(b, l.now())
	if b.tokens >= 1 {
		return false, 0
	}
	perToken := l.limit.Window.Seconds() / float64(l.limit.Failures)
	return true, time.Duration((1 - b.tokens) * perToken * float64(time.Second))
}

// fail spends one of addr's tries.
func (l *loginLimiter) fail(addr string) {
	if !l.enabled() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e, ok := l.clients[addr]
	if !ok {
		for l.lru.Len() >= l.limit.MaxClients {
			old := l.lru.Back()
			delete(l.clients, old.Value.(*bucket).addr)
			l.lru.Remove(old)
		}
		e = l.lru.PushFront(&bucket{addr: addr, tokens: float64(l.limit.Failures), at: now})
		l.clients[addr] = e
	}
	l.lru.MoveToFront(e)
	b := e.Value.(*bucket)
	l.refill(b, now)
	b.tokens = math.Max(0, b.tokens-1)
}

// size is the number of addresses remembered.
func (l *loginLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}
