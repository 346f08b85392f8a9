package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/imgtool/imgtool/internal/compression"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// maxDownload bounds an ADD URL download.
const maxDownload = 8 << 30

// addOp is what ADD does beyond COPY: URLs and local archives.
type addOp struct {
	checksum   string
	keepGitDir *bool // --keep-git-dir, for git sources
	unpack     *bool // --unpack; nil: archives from the context are extracted, URLs are not
	client     *http.Client
	tmp        func(string) (string, error)
}

func (s *stageRun) addCmd(ctx context.Context, c *instructions.AddCommand) error {
	client := s.r.b.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	return s.copy(ctx, copyOp{
		srcs: c.SourcePaths, contents: c.SourceContents, dest: c.DestPath, from: s.r.context,
		chown: c.Chown, chmod: c.Chmod, excludes: c.ExcludePatterns, createdBy: c.String(),
		add: &addOp{checksum: c.Checksum, keepGitDir: c.KeepGitDir, unpack: c.Unpack, client: client, tmp: s.r.tempDir},
	})
}

// fetch handles a git or URL source: it checks the repository out
// (gitadd.go) or downloads the file (checking --checksum), and reports
// true. Other sources are left to COPY's rules.
func (a *addOp) fetch(ctx context.Context, s *stageRun, src string) ([]match, bool, error) {
	if g, ok, err := addGitSource(src); ok || err != nil {
		if err != nil {
			return nil, true, err
		}
		ms, err := a.fetchGit(ctx, s, g, src)
		return ms, true, err
	}
	u, err := url.Parse(src)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		if a.checksum != "" {
			return nil, true, fmt.Errorf("--checksum is for URL sources, not %q", src)
		}
		return nil, false, nil
	}
	dir, err := a.tmp("add-")
	if err != nil {
		return nil, true, err
	}
	file := filepath.Join(dir, "download")
	mtime, err := a.download(ctx, src, file)
	if err != nil {
		return nil, true, fmt.Errorf("download %s: %w", src, err)
	}
	name := path.Base(path.Clean("/" + u.Path))
	if name == "/" {
		name = "__unnamed__" // docker's name for a URL without a file name
	}
	if err := os.Chtimes(file, mtime, mtime); err != nil {
		return nil, true, err
	}
	m := match{host: file, name: name, extract: a.unpack != nil && *a.unpack}
	return []match{m}, true, nil
}

// download writes url's body to file, checks --checksum, and returns the
// Last-Modified time (the epoch when there is none), which docker gives
// the file.
func (a *addOp) download(ctx context.Context, src, file string) (time.Time, error) {
	var want digest.Digest
	if a.checksum != "" {
		want = digest.Digest(a.checksum)
		if err := want.Validate(); err != nil {
			return time.Time{}, fmt.Errorf("--checksum=%s: %w", a.checksum, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return time.Time{}, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return time.Time{}, fmt.Errorf("server answered %s", resp.Status)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	var dg digest.Digester = digest.Canonical.Digester()
	if want != "" {
		dg = want.Algorithm().Digester()
	}
	n, err := io.Copy(io.MultiWriter(f, dg.Hash()), io.LimitReader(resp.Body, maxDownload+1))
	if err != nil {
		return time.Time{}, err
	}
	if n > maxDownload {
		return time.Time{}, fmt.Errorf("more than %d bytes", int64(maxDownload))
	}
	if want != "" && dg.Digest() != want {
		return time.Time{}, fmt.Errorf("checksum mismatch: got %s, --checksum wants %s", dg.Digest(), want)
	}
	mtime := time.Unix(0, 0)
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		mtime = lm
	}
	return mtime, nil
}

// isArchive reports whether ADD extracts the local file p of src: a tar,
// plain or compressed with gzip, bzip2, xz or zstd (or --unpack says so).
func (a *addOp) isArchive(src *source, p string) bool {
	if a.unpack != nil {
		return *a.unpack
	}
	host, err := src.t.resolve(p)
	if err != nil || !isRegular(host) {
		return false
	}
	f, err := os.Open(host)
	if err != nil {
		return false
	}
	defer f.Close()
	r, err := openArchive(f)
	if err != nil {
		// An xz file that is broken is an error, not a file to copy.
		return errors.Is(err, errXZCorrupt) || errors.Is(err, errXZDict)
	}
	defer r.Close()
	_, err = tar.NewReader(r).Next()
	return err == nil
}

func isRegular(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// openArchive decompresses f by its magic bytes: gzip, bzip2, xz or
// zstd, as docker does.
func openArchive(f *os.File) (io.ReadCloser, error) {
	br := bufio.NewReader(f)
	magic, _ := br.Peek(len(xzMagic))
	switch {
	case bytes.HasPrefix(magic, []byte("BZh")):
		return io.NopCloser(bzip2.NewReader(br)), nil
	case bytes.Equal(magic, xzMagic):
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		r, err := openXZ(f, fi.Size())
		if err != nil {
			return nil, err
		}
		return io.NopCloser(bufio.NewReaderSize(r, 64<<10)), nil
	}
	rc, _, err := compression.Decompress(br)
	return rc, err
}

// copyPrepared writes a downloaded file (or extracts it, with --unpack).
func (c *copier) copyPrepared(m match, dest string, destDir bool) error {
	if m.extract {
		return c.extract(m.host, dest)
	}
	target := dest
	if destDir {
		target = path.Join(dest, m.name)
	}
	var st unix.Stat_t
	if err := unix.Stat(m.host, &st); err != nil {
		return err
	}
	parent, err := c.w.mkdirAll(path.Dir(target), c.owner)
	if err != nil {
		return err
	}
	return c.copyEntry(m.host, m.name, parent, path.Base(target), &st)
}

// extract unpacks the archive at host into directory dest of the tree,
// keeping the archive's owners unless --chown is given, as docker does.
func (c *copier) extract(host, dest string) error {
	f, err := os.Open(host)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := openArchive(f)
	if err != nil {
		return fmt.Errorf("extract %s: %w", filepath.Base(host), err)
	}
	defer r.Close()
	if _, err := c.w.mkdirAll(dest, c.owner); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	var dirs []dirMeta
	for {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("extract %s: %w", filepath.Base(host), err)
		}
		d, err := c.extractEntry(tr, h, dest)
		if err != nil {
			return fmt.Errorf("extract %s: %s: %w", filepath.Base(host), h.Name, err)
		}
		if d != nil {
			dirs = append(dirs, *d)
		}
	}
	// Directory times and modes last: their entries changed them.
	for _, d := range dirs {
		if err := c.w.finish(d.host, d.meta, false); err != nil {
			return err
		}
	}
	return nil
}

type dirMeta struct {
	host string
	meta fileMeta
}

// extractEntry writes one tar entry under dest.
func (c *copier) extractEntry(tr io.Reader, h *tar.Header, dest string) (*dirMeta, error) {
	name := path.Clean("/" + h.Name)
	if name == "/" {
		return nil, nil
	}
	target := path.Join(dest, name)
	m := fileMeta{mode: os.FileMode(h.Mode) & os.ModePerm, mtime: unix.NsecToTimespec(h.ModTime.UnixNano()), owner: owner{h.Uid, h.Gid}}
	if h.Mode&0o4000 != 0 {
		m.mode |= os.ModeSetuid
	}
	if h.Mode&0o2000 != 0 {
		m.mode |= os.ModeSetgid
	}
	if h.Mode&0o1000 != 0 {
		m.mode |= os.ModeSticky
	}
	if c.owner != (owner{}) {
		m.owner = c.owner
	}
	if c.chmod != nil {
		m.mode = *c.chmod
	}
	parent, err := c.w.mkdirAll(path.Dir(target), c.owner)
	if err != nil {
		return nil, err
	}
	base := path.Base(target)
	switch h.Typeflag {
	case tar.TypeDir:
		host, exists, err := c.w.prepare(parent, base, true)
		if err != nil {
			return nil, err
		}
		if !exists {
			if err := os.Mkdir(host, 0o700); err != nil {
				return nil, err
			}
		}
		c.w.mark(host)
		return &dirMeta{host: host, meta: m}, nil
	case tar.TypeReg:
		return nil, c.w.writeFile(parent, base, tr, m)
	case tar.TypeSymlink:
		return nil, c.w.symlink(parent, base, h.Linkname, m)
	case tar.TypeLink:
		old, err := c.w.t.resolve(path.Join(dest, path.Clean("/"+h.Linkname)))
		if err != nil {
			return nil, fmt.Errorf("hard link to %s: %w", h.Linkname, err)
		}
		return nil, c.w.link(old, parent, base)
	}
	return nil, nil // devices and fifos need privileges a rootless build lacks; docker skips them too when it cannot
}
