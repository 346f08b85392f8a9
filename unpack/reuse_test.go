package unpack_test

import (
	"archive/tar"
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/unpack"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"golang.org/x/sys/unix"
)

// siblingLayer is the top layer of an image rebuilt after a few changes:
// v picks the version of the files that change.
func siblingLayer(v int) func(b *tarB) {
	return func(b *tarB) {
		big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // several compare chunks
		late := bytes.Clone(big)
		late[len(late)-1] = byte('0' + v) // differs in its last chunk only
		mtime := fileTime.Add(time.Duration(v) * time.Second)
		mode := int64(0o644)
		if v == 2 {
			mode = 0o600
		}
		b.add(&tar.Header{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: dirTime}, nil)
		b.add(&tar.Header{Name: "app/same", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: fileTime}, []byte("same"))
		b.add(&tar.Header{Name: "app/empty", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: fileTime}, nil)
		b.add(&tar.Header{Name: "app/big", Typeflag: tar.TypeReg, Mode: 0o755, ModTime: fileTime}, big)
		b.link("app/big-link", "app/big")
		b.add(&tar.Header{Name: "app/owned", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 1000, Gid: 50, ModTime: fileTime}, []byte("owned"))
		b.add(&tar.Header{Name: "app/xattr", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: fileTime,
			PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v"}}, []byte("x"))
		b.add(&tar.Header{Name: "app/content", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: fileTime}, []byte{'v', byte('0' + v)})
		b.add(&tar.Header{Name: "app/late", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: fileTime}, late)
		b.add(&tar.Header{Name: "app/mode", Typeflag: tar.TypeReg, Mode: mode, ModTime: fileTime}, []byte("m"))
		b.add(&tar.Header{Name: "app/mtime", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: mtime}, []byte("t"))
		if v == 2 {
			b.add(&tar.Header{Name: "app/new", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: fileTime}, []byte("new"))
		}
	}
}

// TestCacheSiblingReuse: a chain built over the parent of an earlier one
// (the same image rebuilt with a few files changed) hard-links the
// earlier chain's files that are the same in content and metadata, writes
// the others, and ends up holding exactly what applying its layer gives;
// the earlier chain is left as it was.
func TestCacheSiblingReuse(t *testing.T) {
	for _, rootless := range []bool{false, true} {
		t.Run(modeName(rootless), func(t *testing.T) {
			b := newBlobs()
			base := b.layer(t, richBase)
			v1, v2 := b.layer(t, siblingLayer(1)), b.layer(t, siblingLayer(2))
			c := openCache(t, cacheDir(t), unpack.Options{Rootless: rootless})
			first := rootfs(t, c, b, base, v1)
			before := treeState(t, first.Dir)
			second := rootfs(t, c, b, base, v2)
			if d := diffStates(before, treeState(t, first.Dir)); d != "" {
				t.Errorf("building the sibling changed the first chain:\n%s", d)
			}
			fresh := rootfs(t, openCache(t, cacheDir(t), unpack.Options{Rootless: rootless}), b, base, v2)
			if d := diffStates(layerState(t, fresh.Dir), layerState(t, second.Dir)); d != "" {
				t.Errorf("the chain built beside a sibling differs from one built alone:\n%s", d)
			}
			for _, name := range []string{"app/same", "app/empty", "app/big", "app/big-link", "app/owned", "app/xattr"} {
				if !sameInode(t, first.Dir, second.Dir, name) {
					t.Errorf("%s: written again, want a hard link to the sibling's", name)
				}
			}
			for _, name := range []string{"app/content", "app/late", "app/mode", "app/mtime"} {
				if sameInode(t, first.Dir, second.Dir, name) {
					t.Errorf("%s: linked to the sibling's, which differs", name)
				}
			}
			wantContent(t, second.Dir, "app/content", "v2")
			wantContent(t, second.Dir, "app/new", "new")
		})
	}
}

// TestCacheSiblingNotesPruned: Prune forgets the chains it removes as
// siblings, and a chain built after its sibling was pruned is whole.
func TestCacheSiblingNotesPruned(t *testing.T) {
	b := newBlobs()
	base := b.layer(t, richBase)
	v1, v2 := b.layer(t, siblingLayer(1)), b.layer(t, siblingLayer(2))
	dir := cacheDir(t)
	c := openCache(t, dir, unpack.Options{})
	first := rootfs(t, c, b, base, v1)
	first.Release()
	chain1 := identity.ChainID([]digest.Digest{base.DiffID, v1.DiffID})
	if _, err := c.Prune(context.Background(), func(d digest.Digest) bool { return d != chain1 }); err != nil {
		t.Fatal(err)
	}
	notes, _ := filepath.Glob(filepath.Join(dir, "*", "siblings", "*", chain1.Encoded()))
	if len(notes) != 0 {
		t.Errorf("pruned chain still noted as a sibling: %v", notes)
	}
	second := rootfs(t, c, b, base, v2)
	wantContent(t, second.Dir, "app/same", "same")
	wantContent(t, second.Dir, "app/big-link", string(bytes.Repeat([]byte("0123456789abcdef"), 20000)))
}

// layerState is treeState without the directories the layers do not
// name, which unpacking makes with the time it ran.
func layerState(t *testing.T, dir string) map[string]string {
	m := treeState(t, dir)
	for _, implicit := range []string{".", "data", "usr", "dev"} {
		delete(m, implicit)
	}
	return m
}

func sameInode(t *testing.T, a, b, name string) bool {
	t.Helper()
	var sa, sb unix.Stat_t
	must(t, unix.Lstat(filepath.Join(a, name), &sa))
	must(t, unix.Lstat(filepath.Join(b, name), &sb))
	return sa.Ino == sb.Ino && sa.Dev == sb.Dev
}

// TestCacheApplyTar: a chain made from a layer's tar as it is written is
// the chain Rootfs makes from the layer's blob, named by the tar's
// digest; a second one finds it made; a broken tar leaves nothing
// behind.
func TestCacheApplyTar(t *testing.T) {
	b := newBlobs()
	base := b.layer(t, richBase)
	tb := newTar(t)
	siblingLayer(1)(tb)
	raw := tb.bytes()
	top := b.layer(t, siblingLayer(1))
	dir := cacheDir(t)
	c := openCache(t, dir, unpack.Options{})
	for _, parent := range [][]manifest.LayerDesc{{base}, nil} {
		l, diffID, err := c.ApplyTar(context.Background(), b, parent, bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("ApplyTar over %d layers: %v", len(parent), err)
		}
		t.Cleanup(func() { l.Release() })
		if diffID != top.DiffID {
			t.Errorf("diff ID %s, want %s", diffID, top.DiffID)
		}
		want := rootfs(t, openCache(t, cacheDir(t), unpack.Options{}), b, append(parent, top)...)
		if l.ChainID != want.ChainID {
			t.Errorf("chain %s, want %s", l.ChainID, want.ChainID)
		}
		if d := diffStates(layerState(t, want.Dir), layerState(t, l.Dir)); d != "" {
			t.Errorf("over %d layers, the chain made from the tar differs from the blob's:\n%s", len(parent), d)
		}
		again, _, err := c.ApplyTar(context.Background(), b, parent, bytes.NewReader(raw))
		if err != nil || again.Dir != l.Dir {
			t.Errorf("second ApplyTar: %v, %v; want the chain made first", again, err)
		}
		if again != nil {
			again.Release()
		}
	}
	if _, _, err := c.ApplyTar(context.Background(), b, []manifest.LayerDesc{base}, bytes.NewReader(raw[:len(raw)/2])); err == nil {
		t.Error("a truncated tar was applied")
	}
	staging, _ := filepath.Glob(filepath.Join(dir, "*", "staging", "*"))
	if len(staging) != 0 {
		t.Errorf("staging left: %v", staging)
	}
	chains, _ := filepath.Glob(filepath.Join(dir, "*", "chains", "*"))
	locks, _ := filepath.Glob(filepath.Join(dir, "*", "locks", "*"))
	if len(locks) > len(chains)+1 { // the base chain's lock may stay, as Rootfs leaves it
		t.Errorf("locks left: %v (chains %v)", locks, chains)
	}
}
