package registry

import (
	"fmt"
	"testing"
	"time"
)

func TestLoginLimiter(t *testing.T) {
	type step struct {
		at      time.Duration // since the start
		addr    string
		fail    bool // record a failure (else ask whether blocked)
		blocked bool
		retry   time.Duration
	}
	for _, tc := range []struct {
		name  string
		limit LoginLimit
		steps []step
	}{
		{"burst then blocked", LoginLimit{Failures: 3, Window: time.Minute}, []step{
			{0, "a", true, false, 0}, {0, "a", true, false, 0},
			{0, "a", false, false, 0},
			{0, "a", true, false, 0},
			{0, "a", false, true, 20 * time.Second},
			{0, "b", false, false, 0}, // other addresses are unaffected
		}},
		{"one try back per window/failures", LoginLimit{Failures: 3, Window: time.Minute}, []step{
			{0, "a", true, false, 0}, {0, "a", true, false, 0}, {0, "a", true, false, 0},
			{10 * time.Second, "a", false, true, 10 * time.Second},
			{20 * time.Second, "a", false, false, 0},
			{20 * time.Second, "a", true, false, 0},
			{21 * time.Second, "a", false, true, 19 * time.Second},
			{2 * time.Minute, "a", false, false, 0},
		}},
		{"the budget never exceeds the burst", LoginLimit{Failures: 2, Window: time.Minute}, []step{
			{0, "a", true, false, 0},
			{time.Hour, "a", true, false, 0}, {time.Hour, "a", true, false, 0},
			{time.Hour, "a", false, true, 30 * time.Second},
		}},
		{"disabled", LoginLimit{}, []step{
			{0, "a", true, false, 0}, {0, "a", true, false, 0}, {0, "a", false, false, 0},
		}},
		{"forgotten addresses start afresh", LoginLimit{Failures: 1, Window: time.Hour, MaxClients: 2}, []step{
			{0, "a", true, false, 0}, {0, "a", false, true, time.Hour},
			{0, "b", true, false, 0}, {0, "c", true, false, 0}, // evicts a, the least recent
			{0, "a", false, false, 0},
			{0, "c", false, true, time.Hour},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			now := start
			l := newLoginLimiter(tc.limit, func() time.Time { return now })
			for i, s := range tc.steps {
				now = start.Add(s.at)
				if s.fail {
					l.fail(s.addr)
					continue
				}
				blocked, retry := l.blocked(s.addr)
				if blocked != s.blocked || (blocked && (retry-s.retry).Abs() > time.Millisecond) {
					t.Errorf("step %d (%s at %s): blocked %v retry %s, want %v %s", i, s.addr, s.at, blocked, retry, s.blocked, s.retry)
				}
			}
		})
	}
}

// TestLoginLimiterMemoryBounded sprays failures from many addresses: the
// table never holds more than MaxClients.
func TestLoginLimiterMemoryBounded(t *testing.T) {
	l := newLoginLimiter(LoginLimit{Failures: 5, Window: time.Minute, MaxClients: 100}, time.Now)
	for i := range 10000 {
		l.fail(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if n := l.size(); n != 100 {
		t.Fatalf("limiter remembers %d addresses, want 100", n)
	}
	if _, ok := l.clients["10.0.39.15"]; !ok { // the last one sprayed (i = 9999)
		t.Error("the most recent address was evicted")
	}
}
