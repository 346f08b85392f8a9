package build

import (
	"context"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// A COPY from the context is keyed by its files' digests, and keying it
// before it runs reads every file the stat cache does not vouch for; a
// cold build then reads them all twice, once to key and once to copy.
// When no lookup can hit (the stage looks nothing up, or there is no
// record to find: no step cache or an empty one, and no --cache-from),
// the key can only be recorded, not used, so the COPY runs first and is
// keyed after: the streamed copy digests each file as it writes it, into
// the stat cache, and keying it then reads nothing again. The key is the
// one keying first gives.

// keyAfter reports whether c runs before it is keyed.
func (s *stageRun) keyAfter(c instructions.Command) bool {
	cp, ok := c.(*instructions.CopyCommand)
	if !ok || cp.From != "" {
		return false
	}
	return s.noCache || (len(s.r.remote) == 0 && s.r.noRecords)
}

// runKeyedAfter runs c, then keys and records it.
func (s *stageRun) runKeyedAfter(ctx context.Context, c instructions.Command, st *step) error {
	start := time.Now().UTC()
	s.r.mu.Lock()
	s.r.ran++
	s.r.mu.Unlock()
	since := s.filesNow()
	s.keyingAfter = true
	err := s.dispatch(ctx, c, st)
	s.keyingAfter = false
	if err != nil {
		return err
	}
	key, cacheable, err := s.loggedKeySince(ctx, c, st, since)
	if err != nil {
		return err
	}
	last := s.steps[len(s.steps)-1]
	if !cacheable {
		var diffID digest.Digest
		if last.Layer != nil {
			diffID = last.Layer.DiffID
		}
		if key, err = chainKey(s.key, "result", text(c), diffID); err != nil {
			return err
		}
	}
	return s.record(Record{Key: key, Layer: last.Layer, Created: start, CreatedBy: last.CreatedBy})
}

// fusedHash puts the digests of the context files a streamed copy writes
// into the stat cache.
type fusedHash struct {
	stat   *statCache
	counts *fileCounts
	src    *tree
	at     int64 // when the copy started: no digest is trusted for a change after it
}

// hashed is the layer.Entry callback for context file host, whose lstat
// when the copy was planned was lst: a file that changed since is left
// for the key to read.
func (f *fusedHash) hashed(host string, lst *unix.Stat_t) func(digest.Digest, *unix.Stat_t) {
	return func(d digest.Digest, st *unix.Stat_t) {
		if st.Ino != lst.Ino || st.Dev != lst.Dev || st.Size != lst.Size || st.Mtim != lst.Mtim || st.Ctim != lst.Ctim {
			return
		}
		f.stat.store(f.src.rel(host), lst, d, f.at)
		f.counts.add(0, 1, lst.Size)
	}
}
