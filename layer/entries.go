package layer

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"time"

	"github.com/imgtool/imgtool/manifest"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Entry is one entry of a layer that WriteEntries writes from a
// description rather than from a tree on disk: a builder's COPY knows
// every entry it would write, and streams the source files straight into
// the layer instead of writing them into a root filesystem first and
// reading them back.
type Entry struct {
	// Header says what the entry is: Name (relative, slash-separated),
	// Typeflag, Mode, Uid, Gid, ModTime, Linkname. Size is set here for
	// a regular file from its content.
	Header tar.Header
	// File, for a regular file, is the host file its content is read
	// from (opened without following a symlink); when it is empty, Data
	// is the content.
	File string
	Data []byte
	// Hashed, when set for a File entry, is called with the digest of
	// the content written and the file's stat as it was read: a builder
	// that must key the copy by its files' digests takes them from the
	// one read that writes them.
	Hashed func(d digest.Digest, st *unix.Stat_t)
}

// WriteEntries writes entries, which must be in tar order (parents
// before children, ComparePaths order), as a layer into w, with Write's
// normalisation: PAX headers, mtimes in whole seconds clamped to the
// source date epoch, directory names ending in "/". A regular file's size
// is the one it has when it is read.
func WriteEntries(ctx context.Context, w io.Writer, entries []Entry, o Options) (manifest.LayerDesc, error) {
	p, err := newPipeline(w, o)
	if err != nil {
		return manifest.LayerDesc{}, err
	}
	if err := writeList(ctx, p.tw, entries, o); err != nil {
		p.abort()
		return manifest.LayerDesc{}, fmt.Errorf("write layer: %w", err)
	}
	d, err := p.finish()
	if err != nil {
		return manifest.LayerDesc{}, fmt.Errorf("write layer: %w", err)
	}
	return d, nil
}

func writeList(ctx context.Context, tw *tar.Writer, entries []Entry, o Options) error {
	buf := make([]byte, 256<<10)
	for i := range entries {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		e := &entries[i]
		h := e.Header
		h.Format = tar.FormatPAX
		h.ModTime = clamp(time.Unix(h.ModTime.Unix(), 0), o.SourceDateEpoch)
		h.AccessTime, h.ChangeTime, h.Uname, h.Gname = time.Time{}, time.Time{}, "", ""
		if h.Typeflag == tar.TypeDir && !strings.HasSuffix(h.Name, "/") {
			h.Name += "/"
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
			if err := tw.WriteHeader(&h); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			continue
		}
		if e.File == "" {
			h.Size = int64(len(e.Data))
			if err := tw.WriteHeader(&h); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			if _, err := tw.Write(e.Data); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			continue
		}
		if err := writeFileEntry(tw, &h, e.File, buf, e.Hashed); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
	return nil
}

// writeFileEntry writes regular file host as h, with the size it has
// once open: the header precedes the content, and a file that changed
// since it was listed must still give a well-formed tar. It reads through
// the bare descriptor: an os.File would register it with the poller and
// make two more system calls per file for nothing.
func writeFileEntry(tw *tar.Writer, h *tar.Header, host string, buf []byte, hashed func(digest.Digest, *unix.Stat_t)) error {
	fd, err := openRead(host)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return errors.New("it is no longer a regular file")
	}
	h.Size = st.Size
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	var w io.Writer = tw
	var sum hash.Hash
	if hashed != nil {
		sum = sha256.New()
		w = io.MultiWriter(tw, sum)
	}
	for left := h.Size; left > 0; {
		n, err := unix.Read(fd, buf[:min(int64(len(buf)), left)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("file shrank while it was being read")
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		left -= int64(n)
	}
	if hashed != nil {
		hashed(digest.NewDigest(digest.SHA256, sum), &st)
	}
	return nil
}

// openRead opens regular file p for reading without following a
// symlink, and without updating its access time when allowed (only the
// owner may ask).
func openRead(p string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Open(p, flags|unix.O_NOATIME, 0)
	if err == unix.EPERM {
		fd, err = unix.Open(p, flags, 0)
	}
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return fd, nil
}
