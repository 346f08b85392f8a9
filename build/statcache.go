package build

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// statCache remembers the content digest of a build context's files by
// their metadata (size, mtime, ctime, inode, mode), so that a rebuild
// reads only the files whose metadata changed, as BuildKit's contenthash
// and git's index do. It is loaded on first use and written back, whole
// and by rename, when the build ends; two builds of one context each
// write a valid cache, and the last one stays.
type statCache struct {
	path string // "" : nothing is remembered (no build cache)
	root string // the context's host directory, which the file names
	mu   sync.Mutex
	// entries maps a path below root to what was known of it.
	entries map[string]statEntry
	seen    map[string]bool // the paths this build looked at
	loaded  bool
	dirty   bool
	// checked, hashed and read count the files looked at, the files
	// read, and their bytes, for the progress.
	checked, hashed int
	read            int64
}

// statEntry is one file's metadata and digest. At is when the digest was
// taken: a file changed within the timestamp granularity of that moment
// could keep its metadata, so such entries are not trusted (git's "racy"
// rule).
type statEntry struct {
	Size   int64         `json:"s"`
	Mtime  int64         `json:"m"`
	Ctime  int64         `json:"c"`
	Ino    uint64        `json:"i"`
	Dev    uint64        `json:"d"`
	Mode   uint32        `json:"o"`
	Digest digest.Digest `json:"h"`
	At     int64         `json:"a"`
}

// racyWindow is how close to the hashing time a change must be for the
// metadata to be distrusted: above the coarse kernel clock's tick.
const racyWindow = int64(50 * time.Millisecond)

// maxStatCache bounds the stat cache file read; past maxStatEntries
// entries, only those of the last build are written back.
const (
	maxStatCache   = 256 << 20
	maxStatEntries = 2_000_000
)

// statFile is the file a stat cache is kept in, in gob: for the 20,000
// files of a large context it decodes several times faster than JSON.
type statFile struct {
	Version int
	Root    string
	Entries map[string]statEntry
}

const statVersion = 1

// newStatCache returns the stat cache of the context at root, kept in
// the build cache c (nil: an empty one that is never saved).
func newStatCache(c *Cache, root string) *statCache {
	sc := &statCache{root: root, entries: map[string]statEntry{}, seen: map[string]bool{}}
	if c != nil {
		sum := sha256.Sum256([]byte(root))
		sc.path = filepath.Join(c.dir, "files", hex.EncodeToString(sum[:]))
	}
	return sc
}

func (sc *statCache) load() {
	if sc.loaded || sc.path == "" {
		sc.loaded = true
		return
	}
	sc.loaded = true
	raw, err := readSmall(sc.path, maxStatCache)
	if err != nil {
		return // none yet, or unreadable: every file is hashed
	}
	var f statFile
	if gob.NewDecoder(bytes.NewReader(raw)).Decode(&f) == nil && f.Version == statVersion && f.Root == sc.root && f.Entries != nil {
		sc.entries = f.Entries
	}
}

// digest returns the content digest of the regular file host (rel below
// the root), whose lstat is st, reading it only when its metadata is not
// the one remembered.
func (sc *statCache) digest(host, rel string, st *unix.Stat_t) (digest.Digest, error) {
	if d, ok := sc.lookup(rel, st); ok {
		return d, nil
	}
	at := time.Now().UnixNano()
	d, err := hashFile(host, make([]byte, hashBufSize))
	if err != nil {
		return "", err
	}
	sc.store(rel, st, d, at)
	return d, nil
}

// lookup returns the remembered digest of rel when its metadata, st, is
// the one remembered and was taken long enough after the file last
// changed.
func (sc *statCache) lookup(rel string, st *unix.Stat_t) (digest.Digest, bool) {
	sc.mu.Lock()
	sc.load()
	sc.checked++
	sc.seen[rel] = true
	e, ok := sc.entries[rel]
	sc.mu.Unlock()
	cur := statEntryOf(st)
	if ok && e.Size == cur.Size && e.Mtime == cur.Mtime && e.Ctime == cur.Ctime && e.Ino == cur.Ino && e.Dev == cur.Dev &&
		e.Mode == cur.Mode && e.At-racyWindow > max(cur.Mtime, cur.Ctime) && len(e.Digest) == len("sha256:")+64 {
		return e.Digest, true
	}
	return "", false
}

// store remembers d as the digest of rel, with metadata st, read from
// time at (Unix nanoseconds) on.
func (sc *statCache) store(rel string, st *unix.Stat_t, d digest.Digest, at int64) {
	cur := statEntryOf(st)
	cur.Digest, cur.At = d, at
	sc.mu.Lock()
	sc.hashed++
	sc.read += st.Size
	sc.entries[rel] = cur
	sc.dirty = true
	sc.mu.Unlock()
}

func statEntryOf(st *unix.Stat_t) statEntry {
	return statEntry{Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Ino: st.Ino, Dev: uint64(st.Dev), Mode: st.Mode}
}

// hashBufSize is the read size of hashFile: large reads make few
// system calls, and a small file is read in one.
const hashBufSize = 256 << 10

// hashFile digests regular file host with buf as its read buffer,
// through the bare descriptor (an os.File costs two more system calls
// per file to register it with the poller).
func hashFile(host string, buf []byte) (digest.Digest, error) {
	const flags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Open(host, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		// O_NOATIME is only for the file's owner.
		fd, err = unix.Open(host, flags, 0)
	}
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", filepath.Base(host), err)
	}
	defer unix.Close(fd)
	h := sha256.New()
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", filepath.Base(host), err)
		}
		if n == 0 {
			return digest.NewDigest(digest.SHA256, h), nil
		}
		h.Write(buf[:n])
	}
}

// save writes the cache back when this build hashed anything.
func (sc *statCache) save() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.path == "" || !sc.dirty {
		return nil
	}
	if len(sc.entries) > maxStatEntries {
		// Grown with files long gone: keep what this build used.
		for rel := range sc.entries {
			if !sc.seen[rel] {
				delete(sc.entries, rel)
			}
		}
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(statFile{Version: statVersion, Root: sc.root, Entries: sc.entries}); err != nil {
		return err
	}
	if err := writeAtomic(sc.path, buf.Bytes()); err != nil {
		return fmt.Errorf("build cache: save file digests: %w", err)
	}
	sc.dirty = false
	return nil
}

// fileCounts counts the files a stage's keys looked at and read, and
// their bytes; the hashing workers add to it at once.
type fileCounts struct {
	checked, hashed, read atomic.Int64
}

// add adds to the counts; a nil fileCounts counts nothing.
func (fc *fileCounts) add(checked, hashed, read int64) {
	if fc == nil {
		return
	}
	fc.checked.Add(checked)
	fc.hashed.Add(hashed)
	fc.read.Add(read)
}

func (fc *fileCounts) get() (checked, hashed, read int64) {
	return fc.checked.Load(), fc.hashed.Load(), fc.read.Load()
}
