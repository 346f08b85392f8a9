package build

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestAddArchiveAndURL: ADD extracts a local gzip tar keeping its owners
// and modes, downloads a URL checking --checksum, and refuses a wrong
// checksum.
func TestAddArchiveAndURL(t *testing.T) {
	s := baseStore(t)
	ctxDir := t.TempDir()
	writeTarGz(t, filepath.Join(ctxDir, "bundle.tar.gz"))
	const body = "downloaded content\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC).Format(http.TimeFormat))
		w.Write([]byte(body))
	}))
	defer srv.Close()
	sum := digest.FromString(body)
	res, out, err := testBuild(t, s, ctxDir, `FROM base:1
ADD bundle.tar.gz /opt/
ADD --checksum=`+sum.String()+` `+srv.URL+`/files/tool.sh /usr/local/bin/
`, nil)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	files := layerFiles(t, s, res, 1)
	if f := files["opt/pkg/run"]; f.data != "#!/bin/sh\n" || f.hdr.Uid != 1234 || f.hdr.Mode != 0o4755 {
		t.Errorf("extracted file: %+v %q", f.hdr, f.data)
	}
	if f := files["opt/pkg/link"]; f.hdr == nil || f.hdr.Typeflag != tar.TypeSymlink || f.hdr.Linkname != "run" {
		t.Errorf("extracted symlink: %+v", f.hdr)
	}
	if _, ok := files["opt/escape"]; !ok {
		t.Errorf("../../escape not kept inside the destination: %v", keys(files))
	}
	if _, ok := files["opt/bundle.tar.gz"]; ok {
		t.Error("archive copied instead of extracted")
	}
	f := layerFiles(t, s, res, 2)["usr/local/bin/tool.sh"]
	if f.data != body || f.hdr.Mode != 0o600 || f.hdr.ModTime.Year() != 2020 {
		t.Errorf("downloaded file: %+v %q", f.hdr, f.data)
	}
	_, _, err = testBuild(t, s, ctxDir, "FROM base:1\nADD --checksum=sha256:"+strings.Repeat("0", 64)+" "+srv.URL+"/x /x\n", nil)
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("wrong checksum: %v", err)
	}
}

func writeTarGz(t *testing.T, p string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	mt := time.Unix(1600000000, 0)
	tw.WriteHeader(&tar.Header{Name: "pkg/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt})
	tw.WriteHeader(&tar.Header{Name: "pkg/run", Typeflag: tar.TypeReg, Mode: 0o4755, Size: 10, Uid: 1234, Gid: 1234, ModTime: mt})
	tw.Write([]byte("#!/bin/sh\n"))
	tw.WriteHeader(&tar.Header{Name: "pkg/link", Typeflag: tar.TypeSymlink, Linkname: "run", ModTime: mt})
	tw.WriteHeader(&tar.Header{Name: "../../escape", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: mt})
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOnbuildAndHeredocs: ONBUILD triggers run in the child build (and
// are not inherited further); heredocs in RUN and COPY work as in
// BuildKit.
func TestOnbuildAndHeredocs(t *testing.T) {
	s := baseStore(t)
	parent := mustBuild(t, s, t.TempDir(), "FROM base:1\nONBUILD RUN echo triggered > /onbuild\n")
	if err := s.Set(context.Background(), "parent:1", parent.Manifest); err != nil {
		t.Fatal(err)
	}
	res := mustBuild(t, s, t.TempDir(), `FROM parent:1
RUN <<EOF
echo line one > /heredoc
echo line two >> /heredoc
EOF
RUN <<EOF
#!/bin/sh
echo "from a script: $0" > /script
EOF
COPY <<EOF /etc/motd
Hello $HOSTNAME
EOF
RUN <<"../../../../escape"
#!/bin/sh
echo "$0" > /script-name
../../../../escape
`)
	if f := imageFile(t, s, res, "onbuild"); f.data != "triggered\n" {
		t.Errorf("ONBUILD trigger: %q", f.data)
	}
	if img := imageConfig(t, s, res); len(img.Config.OnBuild) != 0 {
		t.Errorf("triggers inherited: %v", img.Config.OnBuild)
	}
	if f := imageFile(t, s, res, "heredoc"); f.data != "line one\nline two\n" {
		t.Errorf("RUN heredoc: %q", f.data)
	}
	if f := imageFile(t, s, res, "script"); f.data != "from a script: /dev/pipes/EOF\n" {
		t.Errorf("RUN #! heredoc: %q", f.data)
	}
	if f := imageFile(t, s, res, "script-name"); f.data != "/dev/pipes/escape\n" {
		t.Errorf("a heredoc named ../../../../escape ran as %q", f.data)
	}
	if f := imageFile(t, s, res, "etc/motd"); f.data != "Hello \n" {
		t.Errorf("COPY heredoc: %q", f.data)
	}
	for i := 1; i < layerCount(t, s, res); i++ {
		if _, ok := layerFiles(t, s, res, i)["dev/pipes"]; ok {
			t.Errorf("layer %d holds the heredoc mount point", i)
		}
	}
}
