package build

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgtool/imgtool/unpack"
)

// TestStreamedCopyMatchesTree checks that a COPY streamed into its layer
// (a stage without a writable tree: FROM scratch, or FROM an image read
// through the unpack cache) gives the very layer that copying through the
// stage's tree gives: same entries, modes, owners, links, mtimes, order,
// with the directories above what it writes as the image has them, and
// what it replaces in the image replaced.
func TestStreamedCopyMatchesTree(t *testing.T) {
	ctxDir := contextDir(t, map[string]string{
		"app/main.sh": "echo main\n", "app/lib/x.txt": "x", "app/lib/deep/y.log": "y", "app/empty": "",
		"README": "r", "other/lib/z.txt": "z", "other/main.sh": "other main\n",
		"keep/a.txt": "a", "keep/sub/b.txt": "b", "skip/c.txt": "c",
		".dockerignore": "skip\nkeep\n!keep/sub/b.txt\n*.tmp\n", "junk.tmp": "j",
		"over/etc": "a file where the image has a directory", "over/bin/sh/x": "a directory where it has a symlink",
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
	// After the base image's mtimes (testimage.Created) and before now:
	// directories a copy writes into show the epoch, the others their own.
	epoch := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	// One store: nothing is cached between builds (no step cache), and
	// making a base image takes long under the race detector.
	s := baseStore(t)
	for _, tc := range []struct {
		name, dockerfile string
		streams          int // the COPYs that stream
	}{
		{"whole context", "FROM scratch\nCOPY . /data\n", 1},
		{"into the root", "FROM scratch\nCOPY app/ /\n", 1},
		{"several sources merge", "FROM scratch\nCOPY app/ other/ README /srv/app/\n", 1},
		{"one file renamed", "FROM scratch\nCOPY README /usr/share/doc/readme\n", 1},
		{"chown and chmod", "FROM scratch\nCOPY --chown=1000:50 --chmod=0640 app /x/\n", 1},
		{"parents", "FROM scratch\nCOPY --parents app/lib/x.txt other/./lib /p/\n", 1},
		{"exclude", "FROM scratch\nCOPY --exclude=*.log --exclude=app/empty . /e/\n", 1},
		{"heredoc", "FROM scratch\nCOPY <<EOF /etc/motd\nhello\nEOF\n", 1},
		{"two copies", "FROM scratch\nCOPY app /a\nCOPY other /a/other\n", 2},
		{"wildcard", "FROM scratch\nCOPY */main.sh /bin/\n", 1},
		{"based: a new directory", "FROM base:1\nCOPY . /data\n", 1},
		{"based: into an existing directory", "FROM base:1\nCOPY app/ README /etc/\n", 1},
		{"based: over the image's files", "FROM base:1\nCOPY app/main.sh /bin/sh\nCOPY other/ /bin/\n", 2},
		{"based: into a directory by name", "FROM base:1\nCOPY README /etc\n", 1},
		{"based: a file over a directory, a directory over a symlink", "FROM base:1\nCOPY over/ /\n", 1},
		{"based: new parents", "FROM base:1\nCOPY --chown=app:staff app /usr/local/lib/app/\n", 1},
		{"based: through a symlink", "FROM base:1\nRUN mkdir /real && ln -s /real /link\nCOPY app /link/app\n", 0},
		{"based: after a RUN", "FROM base:1\nRUN mkdir -p /srv/x && echo hi > /srv/x/f\nCOPY app /srv/x/\nCOPY other/lib /srv/x/g/\n", 2},
		{"based: copied, then run over", "FROM base:1\nCOPY app /app\nCOPY other /other\nRUN cat /app/main.sh /other/lib/z.txt > /seen && rm /app/empty\n", 2},
		{"based: workdir, then copy", "FROM base:1\nWORKDIR /app/src\nCOPY app .\nRUN ls > /seen\n", 1},
		{"based: workdir as USER", "FROM base:1\nUSER app\nWORKDIR /home/app/w\nCOPY --chown=app app ./\nUSER root\nRUN ls /home/app/w > /seen\n", 1},
		{"based: over a RUN's deletions", "FROM base:1\nRUN mkdir -p /srv/a && echo x > /srv/a/f && rm -r /etc\nCOPY app /srv/a/\nCOPY README /etc/\nRUN ls /srv/a /etc > /seen\n", 2},
		{"based: a RUN between copies", "FROM base:1\nRUN echo a > /a\nCOPY app /app\nRUN cat /a /app/main.sh > /seen && rm /a\nCOPY other /app/\n", 2},
		{"based: through a RUN's symlink", "FROM base:1\nRUN mkdir /real && ln -s /real /link\nCOPY app /link/x\nCOPY README /link/\n", 0},
		{"based: workdir through a symlink", "FROM base:1\nRUN mkdir /real && ln -s /real /w\nWORKDIR /w/sub\nCOPY README .\n", 0},
		{"based: heredoc and parents", "FROM base:1\nCOPY <<EOF /etc/motd\nhello\nEOF\nCOPY --parents app/lib/x.txt /etc/./\n", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			build := func(tree bool) []string {
				var streamed atomic.Int32
				b := &Builder{Store: s, Executor: unshareExecutor{}, TempDir: filepath.Join(t.TempDir(), "tmp"), treeCopy: tree, streamed: &streamed}
				if !tree {
					uc, err := unpack.OpenCache(context.Background(), filepath.Join(t.TempDir(), "unpack"), unpack.Options{Rootless: os.Geteuid() != 0})
					if err != nil {
						t.Fatal(err)
					}
					b.Unpack = uc
				}
				res, err := b.Build(context.Background(), Request{ContextDir: ctxDir, Dockerfile: []byte(tc.dockerfile), SourceDateEpoch: &epoch})
				if err != nil {
					t.Fatalf("build (through the tree: %v): %v", tree, err)
				}
				if n := int(streamed.Load()); !tree && n != tc.streams {
					t.Errorf("%d COPYs streamed, want %d", n, tc.streams)
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

// TestFilesNeededLater: a streamed COPY's files are unpacked as its layer
// is written only when something after it may need them.
func TestFilesNeededLater(t *testing.T) {
	for _, tc := range []struct {
		name, dockerfile string
		stage, cmd       int // the COPY: stage, and command within it
		want             bool
	}{
		{"last step", "FROM scratch\nCOPY . /\nENV A=1\nCMD [\"/x\"]\n", 0, 0, false},
		{"a later RUN", "FROM busybox\nCOPY . /\nRUN true\n", 0, 0, true},
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
			if got := s.filesNeededLater(); got != tc.want {
				t.Errorf("filesNeededLater = %v, want %v", got, tc.want)
			}
		})
	}
}
