package build

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imgtool/imgtool/store"
)

// TestStreamedCopyMatchesTree checks that a COPY streamed into its layer
// (a FROM scratch stage) gives the very layer that copying through the
// stage's tree gives: same entries, modes, owners, links, mtimes, order.
func TestStreamedCopyMatchesTree(t *testing.T) {
	ctxDir := contextDir(t, map[string]string{
		"app/main.sh": "echo main\n", "app/lib/x.txt": "x", "app/lib/deep/y.log": "y", "app/empty": "",
		"README": "r", "other/lib/z.txt": "z", "other/main.sh": "other main\n",
		"keep/a.txt": "a", "keep/sub/b.txt": "b", "skip/c.txt": "c",
		".dockerignore": "skip\nkeep\n!keep/sub/b.txt\n*.tmp\n", "junk.tmp": "j",
	})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("lib/x.txt", filepath.Join(ctxDir, "app/rel-link")))
	must(os.Symlink("/etc/passwd", filepath.Join(ctxDir, "app/abs-link")))
	must(os.Link(filepath.Join(ctxDir, "app/main.sh"), filepath.Join(ctxDir, "app/hard-main.sh")))
	must(os.Link(filepath.Join(ctxDir, "app/main.sh"), filepath.Join(ctxDir, "app/lib/another-main.sh")))
	must(os.Chmod(filepath.Join(ctxDir, "app/main.sh"), 0o4755))
	must(os.Chmod(filepath.Join(ctxDir, "app/lib/deep"), 0o750))
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(filepath.Walk(ctxDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return nil
		}
		return os.Chtimes(p, old, old)
	}))
	epoch := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ name, dockerfile string }{
		{"whole context", "FROM scratch\nCOPY . /data\n"},
		{"into the root", "FROM scratch\nCOPY app/ /\n"},
		{"several sources merge", "FROM scratch\nCOPY app/ other/ README /srv/app/\n"},
		{"one file renamed", "FROM scratch\nCOPY README /usr/share/doc/readme\n"},
		{"chown and chmod", "FROM scratch\nCOPY --chown=1000:50 --chmod=0640 app /x/\n"},
		{"parents", "FROM scratch\nCOPY --parents app/lib/x.txt other/./lib /p/\n"},
		{"exclude", "FROM scratch\nCOPY --exclude=*.log --exclude=app/empty . /e/\n"},
		{"heredoc", "FROM scratch\nCOPY <<EOF /etc/motd\nhello\nEOF\n"},
		{"two copies", "FROM scratch\nCOPY app /a\nCOPY other /a/other\n"},
		{"wildcard", "FROM scratch\nCOPY */main.sh /bin/\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			build := func(tree bool) []string {
				s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "store"))
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				b := &Builder{Store: s, TempDir: filepath.Join(t.TempDir(), "tmp"), treeCopy: tree}
				res, err := b.Build(context.Background(), Request{ContextDir: ctxDir, Dockerfile: []byte(tc.dockerfile), SourceDateEpoch: &epoch})
				if err != nil {
					t.Fatalf("build (through the tree: %v): %v", tree, err)
				}
				var ids []string
				for _, d := range imageConfig(t, s, res).RootFS.DiffIDs {
					ids = append(ids, d.String())
				}
				if !tree {
					for i := range layerCount(t, s, res) {
						for name, e := range layerFiles(t, s, res, i) {
							t.Logf("%s %c %o %d:%d %s %q", name, e.hdr.Typeflag, e.hdr.Mode, e.hdr.Uid, e.hdr.Gid, e.hdr.ModTime.UTC().Format(time.RFC3339), e.hdr.Linkname)
						}
					}
				}
				return ids
			}
			streamed, tree := build(false), build(true)
			if len(streamed) == 0 || len(streamed) != len(tree) {
				t.Fatalf("layers: streamed %v, through the tree %v", streamed, tree)
			}
			for i := range streamed {
				if streamed[i] != tree[i] {
					t.Errorf("layer %d: streamed %s, through the tree %s", i, streamed[i], tree[i])
				}
			}
		})
	}
}

// TestTreeNeededLater: a COPY streams only when nothing after it needs
// the stage's tree.
func TestTreeNeededLater(t *testing.T) {
	for _, tc := range []struct {
		name, dockerfile string
		stage, cmd       int // the COPY: stage, and command within it
		want             bool
	}{
		{"last step", "FROM scratch\nCOPY . /\nENV A=1\nCMD [\"/x\"]\n", 0, 0, false},
		{"a later COPY", "FROM scratch\nCOPY . /\nCOPY x /y\n", 0, 0, true},
		{"a later WORKDIR", "FROM scratch\nCOPY . /\nWORKDIR /w\n", 0, 0, true},
		{"built on", "FROM scratch AS ctx\nCOPY . /\nFROM ctx\nENV A=1\n", 0, 0, true},
		{"built on by number", "FROM scratch\nCOPY . /\nFROM 0\n", 0, 0, true},
		{"copied from", "FROM scratch AS ctx\nCOPY . /\nFROM busybox\nCOPY --from=CTX /a /a\n", 0, 0, true},
		{"mounted", "FROM scratch AS ctx\nCOPY . /\nFROM busybox\nRUN --mount=from=ctx,target=/c true\n", 0, 0, true},
		{"a variable may name it", "FROM scratch AS ctx\nCOPY . /\nFROM busybox\nARG S\nCOPY --from=$S /a /a\n", 0, 0, true},
		{"other stages only", "FROM busybox AS build\nRUN true\nFROM scratch\nCOPY --from=build /a /a\n", 1, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseDockerfile("Dockerfile", []byte(tc.dockerfile))
			if err != nil {
				t.Fatal(err)
			}
			s := &stageRun{r: &buildRun{plan: p}, idx: tc.stage, rest: p.stages[tc.stage].Commands[tc.cmd+1:]}
			if got := s.treeNeededLater(); got != tc.want {
				t.Errorf("treeNeededLater = %v, want %v", got, tc.want)
			}
		})
	}
}
