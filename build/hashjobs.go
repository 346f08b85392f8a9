package build

import (
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A cold build (or one after a checkout that touched every file) reads
// the whole context to key its COPY: the files whose metadata the stat
// cache does not vouch for are read on every core at once, in batches
// that bound the memory a huge context takes, and their keys are written
// in the walk's order as before.

// maxPendingKeys is how many file keys the hasher holds before it reads
// the files among them and writes the keys.
const maxPendingKeys = 8192

// hashJob is a file to read: pending[key] gets its digest.
type hashJob struct {
	key       int
	host, rel string
	st        unix.Stat_t
}

// flush reads the files of the pending keys, on every core, and writes
// the keys in order.
func (fh *fileHasher) flush() error {
	if err := fh.hashJobs(); err != nil {
		return err
	}
	for i := range fh.pending {
		if err := fh.enc.Encode(&fh.pending[i]); err != nil {
			return err
		}
	}
	fh.pending, fh.jobs = fh.pending[:0], fh.jobs[:0]
	return nil
}

func (fh *fileHasher) hashJobs() error {
	if len(fh.jobs) == 0 {
		return nil
	}
	workers := min(runtime.GOMAXPROCS(0), len(fh.jobs))
	next := make(chan *hashJob)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, hashBufSize)
			for j := range next {
				if errs[w] != nil {
					continue // drain
				}
				at := time.Now().UnixNano()
				d, err := hashFile(j.host, buf)
				if err != nil {
					errs[w] = err
					continue
				}
				fh.pending[j.key].Digest = d
				fh.stat.store(j.rel, &j.st, d, at)
				fh.counts.add(0, 1, j.st.Size)
				if fh.reads != nil {
					fh.reads.Add(1)
				}
			}
		}()
	}
	var err error
	for i := range fh.jobs {
		if err = fh.ctx.Err(); err != nil {
			break
		}
		next <- &fh.jobs[i]
	}
	close(next)
	wg.Wait()
	if err != nil {
		return err
	}
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
