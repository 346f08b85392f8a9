package build

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestDockerignore: docker's rules — patterns from the root, ** across
// directories, a later "!" bringing back what an earlier pattern left
// out, a parent's exclusion covering its children.
func TestDockerignore(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		path     string
		ignored  bool
	}{
		{[]string{"*.log"}, "a.log", true},
		{[]string{"*.log"}, "sub/a.log", false}, // no implicit **/ as in .gitignore
		{[]string{"**/*.log"}, "sub/deep/a.log", true},
		{[]string{"build"}, "build/out/x", true},
		{[]string{"build", "!build/keep"}, "build/keep", false},
		{[]string{"build", "!build/keep"}, "build/other", true},
		{[]string{"*", "!src"}, "src/main.go", false},
		{[]string{"!src", "*"}, "src/main.go", true}, // order matters: the last match wins
		{[]string{"/abs/path"}, "abs/path", true},
		{[]string{"./rel"}, "rel", true},
		{[]string{"docs/*.md"}, "docs/a.md", true},
		{[]string{"docs/*.md"}, "docs/sub/a.md", false},
		{[]string{"**/test"}, "a/b/test/file", true},
		{[]string{"a?c"}, "abc", true},
		{[]string{"[a-c]x"}, "bx", true},
		{[]string{"# comment", ""}, "# comment", false},
		{nil, "anything", false},
	} {
		dir := t.TempDir()
		if len(tc.patterns) > 0 {
			if err := os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte(strings.Join(tc.patterns, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		pats, err := readIgnore(dir, "")
		if err != nil {
			t.Fatal(err)
		}
		src, err := newContext(dir, pats)
		if err != nil {
			t.Fatal(err)
		}
		if got := src.ignored(tc.path); got != tc.ignored {
			t.Errorf("patterns %q, %s: ignored %v, want %v", tc.patterns, tc.path, got, tc.ignored)
		}
	}
}

// TestDockerfileIgnoreFile: <Dockerfile>.dockerignore beside the
// Dockerfile wins over the context's .dockerignore.
func TestDockerfileIgnoreFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte("a\n"), 0o644)
	df := filepath.Join(t.TempDir(), "app.Dockerfile")
	os.WriteFile(df+".dockerignore", []byte("b\n"), 0o644)
	pats, err := readIgnore(dir, df)
	if err != nil || !reflect.DeepEqual(pats, []string{"b"}) {
		t.Errorf("patterns %v (%v), want [b]", pats, err)
	}
	if pats, _ := readIgnore(dir, filepath.Join(dir, "Dockerfile")); !reflect.DeepEqual(pats, []string{"a"}) {
		t.Errorf("without a Dockerfile.dockerignore: %v", pats)
	}
}

// TestSourceMatch: COPY sources resolve inside the context whatever
// they say (.., absolute, symlinks out), wildcards match per component,
// and what matches nothing says so.
func TestSourceMatch(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"a.txt", "b.txt", "c.md", "src/x/main.go", "src/y/main.go", "src/y/util.go", "skip/me"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), []byte(p), 0o644)
	}
	os.Symlink("/etc", filepath.Join(dir, "out"))
	src, err := newContext(dir, []string{"skip"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		src  string
		want []string
		err  string
	}{
		{"a.txt", []string{"/a.txt"}, ""},
		{"*.txt", []string{"/a.txt", "/b.txt"}, ""},
		{"src/*/main.go", []string{"/src/x/main.go", "/src/y/main.go"}, ""},
		{"src/y/*.go", []string{"/src/y/main.go", "/src/y/util.go"}, ""},
		{"../../a.txt", []string{"/a.txt"}, ""},
		{"/a.txt", []string{"/a.txt"}, ""},
		{".", []string{"/"}, ""},
		{"*.none", nil, `"*.none" not found in the build context: no file matches`},
		{"missing", nil, `"missing" not found in the build context: no such file`},
		{"skip/me", nil, "excluded by .dockerignore"},
		{"sk*", nil, "no file matches"},
		{"out/passwd", nil, "no such file"}, // /etc of the context, not of the host
	} {
		got, err := src.match(tc.src)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want error %q", tc.src, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v %v, want %v", tc.src, got, err, tc.want)
		}
	}
	if _, err := src.t.resolve("out/../../../etc/passwd"); err == nil || !isNotExistErr(err) {
		t.Errorf("resolve escaped the context: %v", err)
	}
}

func isNotExistErr(err error) bool {
	return err != nil && (os.IsNotExist(err) || strings.Contains(err.Error(), "no such file"))
}

// TestCopyParents: --parents keeps the source's path, below a "/./"
// pivot when there is one.
func TestCopyParents(t *testing.T) {
	s := baseStore(t)
	ctx := contextDir(t, map[string]string{"x/a/file": "1", "x/b/file": "2", "y/z/deep": "3"})
	res, out, err := testBuild(t, s, ctx, "FROM base:1\nCOPY --parents x/*/file /dst/\nCOPY --parents ./y/./z/deep /pivot/\nCOPY --exclude=b x /excl/\nCOPY --link y /linked\n", nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, p := range []string{"dst/x/a/file", "dst/x/b/file", "pivot/z/deep", "excl/a/file", "linked/z/deep"} {
		if f := imageFile(t, s, res, p); f.hdr == nil {
			t.Errorf("%s missing", p)
		}
	}
	if f := imageFile(t, s, res, "excl/b/file"); f.hdr != nil {
		t.Error("--exclude=b copied b")
	}
}

// TestParseChmod covers --chmod's octal forms and refusals.
func TestParseChmod(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want fs.FileMode
		err  bool
	}{
		{"755", 0o755, false},
		{"0644", 0o644, false},
		{"4755", 0o755 | fs.ModeSetuid, false},
		{"1777", 0o777 | fs.ModeSticky, false},
		{"u+x", 0, true},
		{"99", 0, true},
		{"17777", 0, true},
	} {
		got, err := parseChmod(tc.in)
		if (err != nil) != tc.err || (err == nil && *got != tc.want) {
			t.Errorf("%s: %v %v", tc.in, got, err)
		}
	}
}

// TestCopyThroughSymlinks: a destination through symlinks the image holds
// (absolute, climbing, dangling) is made inside the rootfs, never on the
// host.
func TestCopyThroughSymlinks(t *testing.T) {
	s := baseStore(t)
	hostDir := filepath.Join(t.TempDir(), "host-target") // must stay missing
	hostExisting := t.TempDir()                          // must stay empty
	ctx := contextDir(t, map[string]string{"a.txt": "a"})
	res, out, err := testBuild(t, s, ctx, "FROM base:1\n"+
		"RUN ln -s "+hostDir+" /abs && ln -s "+hostExisting+" /abs2 && ln -s ../../../../up /climb && mkdir /real && ln -s /real /ok\n"+
		"COPY a.txt /abs2/\nCOPY a.txt /abs/sub/\nCOPY a.txt /climb/\nCOPY a.txt /ok/\nWORKDIR /abs/wd\n", nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := os.Lstat(hostDir); !os.IsNotExist(err) {
		t.Fatalf("COPY wrote through a symlink onto the host: %v", err)
	}
	if entries, _ := os.ReadDir(hostExisting); len(entries) != 0 {
		t.Fatalf("COPY wrote through a symlink into a host directory: %v", entries)
	}
	in := strings.TrimPrefix(hostDir, "/")
	for _, p := range []string{in + "/sub/a.txt", strings.TrimPrefix(hostExisting, "/") + "/a.txt", "up/a.txt", "real/a.txt", in + "/wd"} {
		if f := imageFile(t, s, res, p); f.hdr == nil {
			t.Errorf("%s not in the image", p)
		}
	}
}

// TestCopyKeepsHardLinks: files linked in the context stay linked in
// the layer, stored once.
func TestCopyKeepsHardLinks(t *testing.T) {
	s := baseStore(t)
	ctx := contextDir(t, map[string]string{"d/a": "same"})
	if err := os.Link(filepath.Join(ctx, "d/a"), filepath.Join(ctx, "d/b")); err != nil {
		t.Fatal(err)
	}
	res := mustBuild(t, s, ctx, "FROM base:1\nCOPY d /d\n")
	files := layerFiles(t, s, res, -1)
	a, b := files["d/a"], files["d/b"]
	if a.hdr == nil || b.hdr == nil || a.hdr.Typeflag != '0' || b.hdr.Typeflag != '1' || b.hdr.Linkname != "d/a" {
		t.Errorf("hard links: a %+v, b %+v", a.hdr, b.hdr)
	}
}
