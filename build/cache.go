package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/imgtool/imgtool/internal/atomicfile"
	"github.com/imgtool/imgtool/internal/flock"
	"github.com/imgtool/imgtool/manifest"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Cache is the step cache of the builds on one data root: for each step
// key, what the step gave (its layer, already a blob in the store, or
// none) and when it first ran. On disk:
//
//	dir/
//	  records/<hex> one Record as JSON, written by rename; its mtime is its last use
//	  files/<hex>   the stat cache of one build context (see statCache)
//	  lock          flock: exclusive while evicting, so that two evictions do not race
//
// Every write is a temporary file renamed into place, so concurrent
// builds see a record whole or not at all. A record never holds the
// layer's bytes: the store does, and Prune spares the blobs records name
// (Layers).
type Cache struct {
	dir string
}

// Record is what a step gave.
type Record struct {
	Key digest.Digest `json:"key"`
	// Layer is the step's layer (nil: the step changed only the config,
	// or nothing).
	Layer *manifest.LayerDesc `json:"layer,omitempty"`
	// Created is when the step first ran, which the image's history
	// records, so that a cached rebuild gives the same image digest.
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"createdBy,omitempty"`
}

// maxRecordSize bounds a record read from disk or from a registry.
const maxRecordSize = 64 << 10

// OpenCache opens (creating it) the step cache in dir.
func OpenCache(dir string) (*Cache, error) {
	for _, d := range []string{"records", "files"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("open build cache %s: %w", dir, err)
		}
	}
	return &Cache{dir: dir}, nil
}

func (c *Cache) stepPath(key digest.Digest) string {
	return filepath.Join(c.dir, "records", key.Encoded())
}

// Get returns the record of key, and marks it used now.
func (c *Cache) Get(key digest.Digest) (Record, bool, error) {
	if err := key.Validate(); err != nil {
		return Record{}, false, fmt.Errorf("build cache: key %q: %w", key, err)
	}
	p := c.stepPath(key)
	rec, err := readRecord(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, false, nil
	}
	if err != nil || rec.Key != key {
		// A record that does not parse is as good as none; the next Put
		// replaces it.
		return Record{}, false, nil
	}
	now := time.Now()
	_ = os.Chtimes(p, now, now) // the last use, for eviction; best effort
	return rec, true, nil
}

func readRecord(p string) (Record, error) {
	var rec Record
	raw, err := readSmall(p, maxRecordSize)
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return rec, fmt.Errorf("build cache record %s: %w", filepath.Base(p), err)
	}
	return rec, nil
}

func readSmall(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d allowed", p, fi.Size(), limit)
	}
	buf := make([]byte, fi.Size())
	_, err = f.ReadAt(buf, 0)
	if err != nil && fi.Size() > 0 {
		return nil, err
	}
	return buf, nil
}

// empty reports whether the cache holds no record.
func (c *Cache) empty() bool {
	f, err := os.Open(filepath.Join(c.dir, "records"))
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) == 0
}

// Put records rec, replacing any record of its key.
func (c *Cache) Put(rec Record) error {
	if err := rec.Key.Validate(); err != nil {
		return fmt.Errorf("build cache: key %q: %w", rec.Key, err)
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := writeAtomic(c.stepPath(rec.Key), raw); err != nil {
		return fmt.Errorf("build cache: record step: %w", err)
	}
	return nil
}

// writeAtomic replaces p with data. Records are a cache, so no fsync:
// after a crash a record is whole or missing, and a missing one only costs
// a rerun.
func writeAtomic(p string, data []byte) error {
	f, err := atomicfile.Create(p, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	f.NoSync = true
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Commit()
}

// cacheEntry is a record with its last use, as eviction sees it.
type cacheEntry struct {
	Record
	path    string
	lastUse time.Time
}

// entries lists the records, least recently used first. Files that are
// not records (temporaries of killed processes) older than an hour go.
func (c *Cache) entries(ctx context.Context) ([]cacheEntry, error) {
	dir := filepath.Join(c.dir, "records")
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	var out []cacheEntry
	for _, de := range des {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := filepath.Join(dir, de.Name())
		fi, err := de.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if strings.HasPrefix(de.Name(), ".tmp-") {
			if time.Since(fi.ModTime()) > time.Hour {
				os.Remove(p)
			}
			continue
		}
		rec, err := readRecord(p)
		if err != nil {
			os.Remove(p) // unreadable: worthless
			continue
		}
		out = append(out, cacheEntry{Record: rec, path: p, lastUse: fi.ModTime()})
	}
	slices.SortFunc(out, func(a, b cacheEntry) int { return a.lastUse.Compare(b.lastUse) })
	removeStaleTemps(filepath.Join(c.dir, "files"))
	return out, nil
}

// Usage is what the cache holds.
type Usage struct {
	Records int
	// Bytes is the size of the distinct layers the records name.
	Bytes int64
}

// Layers returns the layers the records name, which the store must keep.
func (c *Cache) Layers(ctx context.Context) (map[digest.Digest]bool, error) {
	es, err := c.entries(ctx)
	if err != nil {
		return nil, err
	}
	out := map[digest.Digest]bool{}
	for _, e := range es {
		if e.Layer != nil {
			out[e.Layer.Digest] = true
		}
	}
	return out, nil
}

// EvictReport says what Evict removed.
type EvictReport struct {
	Removed Usage
	Left    Usage
	// Freed lists the layers no remaining record names: the store may
	// delete them unless an image uses them.
	Freed map[digest.Digest]bool
}

// Evict removes the least recently used records until the layers the
// others name take at most keepBytes (0 removes every record). When
// another process is evicting, it waits if wait is set, else does nothing
// and reports flock.ErrBusy.
func (c *Cache) Evict(ctx context.Context, keepBytes int64, wait bool) (EvictReport, error) {
	rep := EvictReport{Freed: map[digest.Digest]bool{}}
	lf, err := os.OpenFile(filepath.Join(c.dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return rep, fmt.Errorf("build cache: %w", err)
	}
	defer lf.Close()
	if err := flock.Lock(ctx, lf, unix.LOCK_EX, wait); err != nil {
		return rep, err
	}
	es, err := c.entries(ctx)
	if err != nil {
		return rep, err
	}
	// refs counts the records naming each layer: a layer's bytes count
	// once, and are freed only with its last record.
	refs := map[digest.Digest]int{}
	var total int64
	for _, e := range es {
		if e.Layer == nil {
			continue
		}
		if refs[e.Layer.Digest] == 0 {
			total += e.Layer.Size
		}
		refs[e.Layer.Digest]++
	}
	rep.Left = Usage{Records: len(es), Bytes: total}
	for _, e := range es {
		if total <= keepBytes && keepBytes > 0 {
			break
		}
		if err := os.Remove(e.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, fmt.Errorf("build cache: evict: %w", err)
		}
		rep.Removed.Records++
		rep.Left.Records--
		if e.Layer == nil {
			continue
		}
		if refs[e.Layer.Digest]--; refs[e.Layer.Digest] == 0 {
			total -= e.Layer.Size
			rep.Removed.Bytes += e.Layer.Size
			rep.Freed[e.Layer.Digest] = true
		}
	}
	rep.Left.Bytes = total
	if keepBytes == 0 {
		// Nothing is cached any more: the stat caches go too.
		if err := removeChildren(filepath.Join(c.dir, "files")); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// removeStaleTemps removes the temporaries killed processes left in dir.
func removeStaleTemps(dir string) {
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		if fi, err := de.Info(); err == nil && strings.HasPrefix(de.Name(), ".tmp-") && time.Since(fi.ModTime()) > time.Hour {
			os.Remove(filepath.Join(dir, de.Name()))
		}
	}
}

func removeChildren(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	for _, de := range des {
		if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
			return fmt.Errorf("build cache: %w", err)
		}
	}
	return nil
}
