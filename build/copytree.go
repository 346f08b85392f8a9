package build

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/moby/patternmatcher"
	"golang.org/x/sys/unix"
)

// copier writes the matches of one COPY or ADD into a stage's tree.
type copier struct {
	ctx      context.Context
	w        *fsWriter
	from     *source
	owner    owner
	chmod    *fs.FileMode
	excludes *patternmatcher.PatternMatcher
	// links maps a source file with several links to where its first
	// link was written, so that the copy keeps them linked, as BuildKit's
	// does.
	links map[[2]uint64]string
}

// copyMatch copies one source to dest: a directory's contents into dest
// (or dest/keep with --parents), a file to dest, or into it when dest is
// a directory.
func (c *copier) copyMatch(m match, dest string, destDir, parents bool) error {
	if m.host != "" {
		return c.copyPrepared(m, dest, destDir)
	}
	host, err := m.src.t.resolve(m.path)
	if err != nil {
		return m.src.notFound(m.path, err.Error())
	}
	var st unix.Stat_t
	if err := unix.Stat(host, &st); err != nil {
		return fmt.Errorf("stat %s: %w", m.path, err)
	}
	target := dest
	if parents {
		target = path.Join(dest, m.keep)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		dirHost, err := c.w.mkdirAll(target, c.owner)
		if err != nil {
			return err
		}
		return c.copyDir(host, m.path, "", dirHost, false)
	}
	if m.extract {
		return c.extract(host, target)
	}
	if destDir && !parents {
		target = path.Join(dest, path.Base(m.path))
	}
	parent, err := c.w.mkdirAll(path.Dir(target), c.owner)
	if err != nil {
		return err
	}
	return c.copyEntry(host, m.path, parent, path.Base(target), &st)
}

// copyDir copies the entries of directory srcHost (at srcPath in the
// source tree; rel below the copied source) into dirHost. lazy means the
// directory itself is excluded and only re-included entries below it are
// copied.
func (c *copier) copyDir(srcHost, srcPath, rel, dirHost string, lazy bool) error {
	return c.eachEntry(srcHost, srcPath, rel, func(e *sourceEntry) error {
		if e.isDir {
			return c.copySubdir(e.host, e.path, e.rel, dirHost, e.name, &e.st, e.skip)
		}
		if lazy {
			// The parent was excluded but this entry is back: make the
			// directories above it, as docker's context transfer does.
			if err := c.w.openUp(filepath.Dir(dirHost)); err != nil {
				return err
			}
			if err := os.MkdirAll(dirHost, 0o755); err != nil {
				return err
			}
		}
		return c.copyEntry(e.host, e.path, dirHost, e.name, &e.st)
	})
}

// sourceEntry is one entry of a source directory that a COPY takes.
type sourceEntry struct {
	name, path, rel, host string // base name; in the source tree; below the copied source; on the host
	st                    unix.Stat_t
	isDir                 bool
	skip                  bool // ignored or excluded: a directory walked only for re-included entries
}

// eachEntry calls fn for the entries of source directory srcHost (at
// srcPath in the source tree; rel below the copied source) that a COPY
// takes: those neither ignored nor excluded, and the excluded
// directories that may hold re-included entries. The tree copy and the
// streamed copy both walk the source through it, so they take the same
// files.
func (c *copier) eachEntry(srcHost, srcPath, rel string, fn func(e *sourceEntry) error) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(srcHost)
	if err != nil {
		return fmt.Errorf("read %s: %w", srcPath, err)
	}
	for _, de := range entries {
		e := sourceEntry{name: de.Name(), path: path.Join(srcPath, de.Name()),
			rel: path.Join(rel, de.Name()), host: filepath.Join(srcHost, de.Name())}
		e.skip = c.from.ignored(e.path) || c.excluded(e.rel)
		if err := unix.Lstat(e.host, &e.st); err != nil {
			return fmt.Errorf("stat %s: %w", e.path, err)
		}
		e.isDir = e.st.Mode&unix.S_IFMT == unix.S_IFDIR
		if e.skip && !(e.isDir && c.mayReinclude()) {
			continue
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	return nil
}

// copySubdir copies one directory entry, setting its own metadata after
// its contents (which would change its mtime, and which an unwritable
// mode would forbid).
func (c *copier) copySubdir(host, srcPath, rel, dirHost, name string, st *unix.Stat_t, excluded bool) error {
	target := filepath.Join(dirHost, name)
	if excluded {
		return c.copyDir(host, srcPath, rel, target, true)
	}
	h, exists, err := c.w.prepare(dirHost, name, true)
	if err != nil {
		return err
	}
	if !exists {
		if err := os.Mkdir(h, 0o700); err != nil {
			return fmt.Errorf("make directory /%s: %w", c.w.t.rel(h), err)
		}
	}
	if err := c.copyDir(host, srcPath, rel, h, false); err != nil {
		return err
	}
	return c.w.finish(h, c.metaOf(st), false)
}

// copyEntry copies one non-directory entry into dirHost as name.
func (c *copier) copyEntry(host, srcPath, dirHost, name string, st *unix.Stat_t) error {
	m := c.metaOf(st)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if first, ok := c.links[key]; ok && st.Nlink > 1 {
			return c.w.link(first, dirHost, name)
		}
		f, err := os.OpenFile(host, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", srcPath, err)
		}
		defer f.Close()
		if err := c.w.writeFile(dirHost, name, f, m); err != nil {
			return err
		}
		if st.Nlink > 1 {
			if c.links == nil {
				c.links = map[[2]uint64]string{}
			}
			c.links[key] = filepath.Join(dirHost, name)
		}
		return nil
	case unix.S_IFLNK:
		target, err := os.Readlink(host)
		if err != nil {
			return fmt.Errorf("read link %s: %w", srcPath, err)
		}
		return c.w.symlink(dirHost, name, target, m)
	case unix.S_IFDIR:
		return c.copySubdir(host, srcPath, "", dirHost, name, st, false)
	}
	return nil // sockets, devices and fifos are not copied, as in docker
}

// excluded reports whether --exclude leaves out rel (below the copied
// source).
func (c *copier) excluded(rel string) bool {
	if c.excludes == nil {
		return false
	}
	ok, err := c.excludes.MatchesOrParentMatches(rel)
	return err == nil && ok
}

func (c *copier) mayReinclude() bool {
	return c.from.descend() || (c.excludes != nil && c.excludes.Exclusions())
}

// writeContent writes a heredoc's content as file target.
func (c *copier) writeContent(target, data string) error {
	parent, err := c.w.mkdirAll(path.Dir(target), c.owner)
	if err != nil {
		return err
	}
	m := fileMeta{mode: 0o644, owner: c.owner, mtime: unix.NsecToTimespec(0)}
	if c.chmod != nil {
		m.mode = *c.chmod
	}
	return c.w.writeFile(parent, path.Base(target), strings.NewReader(data), m)
}
