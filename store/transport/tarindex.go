package transport

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// Bounds on archives read from untrusted sources.
const (
	maxArchiveEntries = 1 << 20
	maxLinkDepth      = 8
)

type tarEntry struct {
	offset, size int64
	link         string // symlink target, already resolved to an archive path
}

// tarIndex gives random access to the regular files of an uncompressed tar
// on disk, without extracting it: entries are stored contiguously, so each
// is a section of the file. Written by hand because neither
// go-containerregistry nor image-spec reads archives this way.
type tarIndex struct {
	f       *os.File
	entries map[string]tarEntry
}

func cleanTarName(n string) string {
	return strings.TrimPrefix(path.Clean("/"+n), "/")
}

func indexTar(f *os.File) (*tarIndex, error) {
	idx := &tarIndex{f: f, entries: map[string]tarEntry{}}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return idx, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read archive %s: %w", f.Name(), err)
		}
		if len(idx.entries) >= maxArchiveEntries {
			return nil, fmt.Errorf("read archive %s: more than %d entries", f.Name(), maxArchiveEntries)
		}
		name := cleanTarName(h.Name)
		switch h.Typeflag {
		case tar.TypeReg:
			// tar.Reader seeks over data it skips, so after Next the file
			// offset is where this entry's data starts.
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				return nil, fmt.Errorf("read archive %s: %w", f.Name(), err)
			}
			idx.entries[name] = tarEntry{offset: off, size: h.Size}
		case tar.TypeSymlink:
			// docker save links layers that two images share.
			target := h.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir("/"+name), target)
			}
			idx.entries[name] = tarEntry{link: cleanTarName(target)}
		case tar.TypeLink:
			idx.entries[name] = tarEntry{link: cleanTarName(h.Linkname)}
		}
	}
}

// open returns the content of archive member name, following links.
func (t *tarIndex) open(name string) (*io.SectionReader, error) {
	name = cleanTarName(name)
	for range maxLinkDepth {
		e, ok := t.entries[name]
		if !ok {
			return nil, fmt.Errorf("archive %s: no member %q: %w", t.f.Name(), name, os.ErrNotExist)
		}
		if e.link == "" {
			return io.NewSectionReader(t.f, e.offset, e.size), nil
		}
		name = e.link
	}
	return nil, fmt.Errorf("archive %s: member %q: too many levels of links", t.f.Name(), name)
}

// readSmall reads a metadata member (index.json, manifest.json, config),
// bounded by limit.
func (t *tarIndex) readSmall(name string, limit int64) ([]byte, error) {
	sr, err := t.open(name)
	if err != nil {
		return nil, err
	}
	if sr.Size() > limit {
		return nil, fmt.Errorf("archive %s: member %q is %d bytes, over the %d byte limit", t.f.Name(), name, sr.Size(), limit)
	}
	return io.ReadAll(sr)
}

func (t *tarIndex) has(name string) bool {
	_, err := t.open(name)
	return !errors.Is(err, os.ErrNotExist) && err == nil
}
