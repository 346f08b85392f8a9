package testimage

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
)

// chunk is how much random data is generated and written at a time; it
// bounds the memory a layer needs, whatever its size.
const chunk = 1 << 20

// tarRandom writes layer's size bytes of random data as a directory
// "layer<N>/" holding up to filesPerLayer files "file<M>.bin".
func tarRandom(ctx context.Context, tw *tar.Writer, seed int64, layer int, size int64) error {
	dir := fmt.Sprintf("layer%d/", layer)
	if err := tw.WriteHeader(dirHeader(dir)); err != nil {
		return fmt.Errorf("write header %s: %w", dir, err)
	}
	files := int64(filesPerLayer)
	if size < files {
		files = 1
	}
	src := rng(seed, layer)
	buf := make([]byte, min(chunk, size))
	for f := range files {
		n := size / files
		if f == files-1 {
			n += size % files
		}
		name := fmt.Sprintf("%sfile%d.bin", dir, f)
		if err := tw.WriteHeader(fileHeader(name, n)); err != nil {
			return fmt.Errorf("write header %s: %w", name, err)
		}
		for n > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			p := buf[:min(n, int64(len(buf)))]
			src.Read(p) // never fails
			if _, err := tw.Write(p); err != nil {
				return fmt.Errorf("write %s: %w", name, err)
			}
			n -= int64(len(p))
		}
	}
	return nil
}

// tarFiles writes files and their parent directories in lexical order.
func tarFiles(tw *tar.Writer, files map[string][]byte) error {
	dirs := map[string]bool{}
	for name := range files {
		if !fs.ValidPath(name) || name == "." {
			return fmt.Errorf("file %q: want a relative slash-separated path without . or .. elements", name)
		}
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var names []string
	for d := range dirs {
		if _, ok := files[d]; ok {
			return fmt.Errorf("file %q: it is also the directory of another file", d)
		}
		names = append(names, d)
	}
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		h := dirHeader(name + "/")
		content, isFile := files[name]
		if isFile {
			h = fileHeader(name, int64(len(content)))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write header %s: %w", h.Name, err)
		}
		if _, err := tw.Write(content); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// tarDir writes the regular files, directories and symlinks under dir in
// lexical order, owned by root, with fixed times. Other file types are an
// error.
func tarDir(ctx context.Context, tw *tar.Writer, dir string) error {
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("walk %s: %w", dir, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return fmt.Errorf("walk %s: %w", dir, err)
		}
		name := filepath.ToSlash(rel)
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		var h *tar.Header
		switch mode := info.Mode(); {
		case mode.IsDir():
			h = dirHeader(name + "/")
		case mode.IsRegular():
			h = fileHeader(name, info.Size())
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("read link %s: %w", p, err)
			}
			h = &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: Created}
		default:
			return fmt.Errorf("add %s: unsupported file type %s", p, mode.Type())
		}
		h.Mode = int64(info.Mode().Perm())
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write header %s: %w", name, err)
		}
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		return copyFile(tw, p, h.Size)
	})
}

// copyFile writes exactly size bytes of the file at p to w, failing if the
// file changed size since it was stat'ed.
func copyFile(w io.Writer, p string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return fmt.Errorf("copy %s: %w", p, err)
	}
	if n != size {
		return fmt.Errorf("copy %s: it shrank from %d to %d bytes while being read", p, size, n)
	}
	return nil
}

func dirHeader(name string) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: Created}
}

func fileHeader(name string, size int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: Created}
}
