package layer

import (
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
)

// Kind says what a Change does to its path.
type Kind int

const (
	// Add writes the path as it is now (new or modified).
	Add Kind = iota
	// Delete writes a whiteout: the path existed in a lower layer and is
	// gone.
	Delete
	// Replace writes a directory as it is now with an opaque whiteout: it
	// was replaced wholesale, so nothing of the lower directory shows.
	Replace
)

// Change is one path of a layer, relative to the layer's root and
// slash-separated.
type Change struct {
	Path string
	Kind Kind
}

// Changes yields a layer's changes, parents before children, in the order
// the tar must hold them; Next returns io.EOF at the end.
type Changes interface {
	Next() (Change, error)
}

// sliceChanges is Changes over a slice.
type sliceChanges struct {
	c []Change
	i int
}

func (s *sliceChanges) Next() (Change, error) {
	if s.i >= len(s.c) {
		return Change{}, io.EOF
	}
	s.i++
	return s.c[s.i-1], nil
}

// List returns Changes over a list already in tar order.
func List(c []Change) Changes { return &sliceChanges{c: c} }

// Dir returns the changes that make a whole tree a layer: every path under
// root, in lexical order of path components (filepath.WalkDir's order),
// which is what makes two copies of a tree give the same tar whatever
// order their files were created in.
func Dir(root string) (Changes, error) {
	var out []Change
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		out = append(out, Change{Path: filepath.ToSlash(rel), Kind: Add})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", root, err)
	}
	return List(out), nil
}
