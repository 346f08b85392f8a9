package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/imgtool/imgtool/internal/rootlesscontainers"
	"github.com/imgtool/imgtool/internal/xattr"
	"golang.org/x/sys/unix"
)

type devIno struct{ dev, ino uint64 }

// headerFor builds the tar header of root/rel from lstat, with what makes
// layers reproducible: no user or group names, no atime or ctime, mtimes
// in whole seconds and clamped to the source date epoch, owners as the
// rootlesscontainers xattr records them. links maps files already written
// to their names, so that a file with several hard links is stored once.
// With caller >= 0, files that uid owns are written as root's. It returns
// nil for what a tar cannot hold (sockets).
func headerFor(root, rel string, links map[devIno]string, epoch *time.Time, caller int) (*tar.Header, error) {
	full := root + "/" + rel
	var st unix.Stat_t
	if err := unix.Lstat(full, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", rel, err)
	}
	h := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: clamp(time.Unix(st.Mtim.Sec, 0), epoch),
		Format:  tar.FormatPAX,
	}
	if caller >= 0 && int(st.Uid) == caller {
		h.Uid, h.Gid = 0, 0
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		h.Typeflag, h.Size = tar.TypeReg, st.Size
		if st.Nlink > 1 {
			key := devIno{uint64(st.Dev), st.Ino}
			if first, ok := links[key]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				links[key] = rel
			}
		}
	case unix.S_IFDIR:
		h.Typeflag, h.Name = tar.TypeDir, rel+"/"
	case unix.S_IFLNK:
		target, err := os.Readlink(full)
		if err != nil {
			return nil, fmt.Errorf("read link %s: %w", rel, err)
		}
		h.Typeflag, h.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev)))
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	default:
		return nil, nil // sockets: docker and BuildKit leave them out too
	}
	if err := addXattrs(full, h); err != nil {
		return nil, fmt.Errorf("xattrs of %s: %w", rel, err)
	}
	return h, nil
}

// StatHeader is the tar header Write gives root/rel, a path that is not a
// hard link to one written before: a builder that streams a layer from a
// description takes the entries it does not make itself (the directories
// above what it writes) from the tree they are in.
func StatHeader(root, rel string, o Options) (*tar.Header, error) {
	caller := -1
	if o.Rootless {
		caller = os.Geteuid()
	}
	h, err := headerFor(root, rel, map[devIno]string{}, o.SourceDateEpoch, caller)
	if err == nil && h == nil {
		err = fmt.Errorf("%s: a socket has no tar header", rel)
	}
	return h, err
}

func clamp(t time.Time, epoch *time.Time) time.Time {
	if epoch != nil && t.After(*epoch) {
		return *epoch
	}
	return t
}

// addXattrs records extended attributes as PAX SCHILY.xattr records (the
// convention GNU tar, docker and BuildKit share), and applies the
// rootlesscontainers owner instead of recording it.
func addXattrs(full string, h *tar.Header) error {
	names, err := xattr.List(full)
	if err != nil || len(names) == 0 {
		return err
	}
	for _, name := range names {
		if isOverlayXattr(name) {
			continue // an overlay upper layer's markers, never the image's
		}
		val, err := getXattr(full, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		} else if err != nil {
			return err
		}
		if name == rootlesscontainers.Xattr {
			r, err := rootlesscontainers.Decode(val)
			if err != nil {
				return err
			}
			if r.UID != rootlesscontainers.NoopID {
				h.Uid = int(r.UID)
			}
			if r.GID != rootlesscontainers.NoopID {
				h.Gid = int(r.GID)
			}
			continue
		}
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+name] = string(val)
	}
	return nil
}

func getXattr(p, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// whiteout is the header that deletes rel (or, opaque, everything a lower
// layer had under directory rel).
func whiteout(rel string, opaque bool, epoch *time.Time) *tar.Header {
	dir, base := path.Split(rel)
	name := dir + ".wh." + base
	if opaque {
		name = strings.TrimSuffix(rel, "/") + "/.wh..wh..opq"
	}
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Format: tar.FormatPAX, ModTime: time.Unix(0, 0)}
	if epoch != nil {
		h.ModTime = *epoch
	}
	return h
}
