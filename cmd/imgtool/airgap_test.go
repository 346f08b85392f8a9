package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// airgapSite is what the connected side pushed to registry A: what every
// registry the images travel to must serve with the same digests.
type airgapSite struct {
	app, tool    v1.Image      // share their first two layers
	multi        v1.ImageIndex // linux/amd64 + linux/arm64
	appSig       v1.Image      // OCI referrer of app (subject)
	multiSig     v1.Image      // OCI referrer of the index
	toolCosign   v1.Image      // cosign-style tag sha256-<hex>.sig on tool
	toolSigTag   string
	digests      map[string]string // name -> digest
	sharedLayers []v1.Hash
}

// mustv takes a call's value and error; the test fails on the error:
// mustv(f())(t).
func mustv[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	return mustv(name.ParseReference(s))(t)
}

// artifact is a signature-like manifest: an OCI image manifest with its
// own config media type (the artifact type) and, when subject is set, a
// subject.
func artifact(t *testing.T, subject *v1.Descriptor) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, "application/vnd.example.signature.v1+json")
	img = mustv(mutate.AppendLayers(img, mustv(random.Layer(512, types.OCILayer))(t)))(t)
	if subject != nil {
		img = mutate.Subject(img, *subject).(v1.Image)
	}
	return img
}

func descOf(t *testing.T, w interface {
	Digest() (v1.Hash, error)
	Size() (int64, error)
	MediaType() (types.MediaType, error)
}) v1.Descriptor {
	t.Helper()
	return v1.Descriptor{Digest: mustv(w.Digest())(t), Size: mustv(w.Size())(t), MediaType: mustv(w.MediaType())(t)}
}

// pushSite pushes the images of the round trip to registry reg.
func pushSite(t *testing.T, reg string) *airgapSite {
	t.Helper()
	s := &airgapSite{digests: map[string]string{}}
	base := mutate.MediaType(mustv(random.Image(16<<10, 2))(t), types.OCIManifestSchema1)
	for _, l := range mustv(base.Layers())(t) {
		s.sharedLayers = append(s.sharedLayers, mustv(l.Digest())(t))
	}
	s.app = mustv(mutate.AppendLayers(base, mustv(random.Layer(8<<10, types.OCILayer))(t)))(t)
	s.tool = mustv(mutate.AppendLayers(base, mustv(random.Layer(8<<10, types.OCILayer))(t)))(t)
	amd := mustv(mutate.AppendLayers(base, mustv(random.Layer(4<<10, types.OCILayer))(t)))(t)
	arm := mustv(random.Image(4<<10, 1))(t)
	s.multi = mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	appDesc, multiDesc := descOf(t, s.app), descOf(t, s.multi)
	s.appSig, s.multiSig = artifact(t, &appDesc), artifact(t, &multiDesc)
	s.toolCosign = artifact(t, nil)
	s.toolSigTag = strings.Replace(mustv(s.tool.Digest())(t).String(), ":", "-", 1) + ".sig"

	must(t, remote.Write(ref(t, reg+"/team/app:1"), s.app))
	must(t, remote.Write(ref(t, reg+"/team/tool:2"), s.tool))
	must(t, remote.WriteIndex(ref(t, reg+"/team/multi:3"), s.multi))
	must(t, remote.Write(ref(t, reg+"/team/app@"+mustv(s.appSig.Digest())(t).String()), s.appSig))
	must(t, remote.Write(ref(t, reg+"/team/multi@"+mustv(s.multiSig.Digest())(t).String()), s.multiSig))
	must(t, remote.Write(ref(t, reg+"/team/tool:"+s.toolSigTag), s.toolCosign))
	for n, w := range map[string]interface{ Digest() (v1.Hash, error) }{
		"app": s.app, "tool": s.tool, "multi": s.multi, "appSig": s.appSig, "multiSig": s.multiSig, "toolCosign": s.toolCosign, "amd": amd, "arm": arm,
	} {
		s.digests[n] = mustv(w.Digest())(t).String()
	}
	return s
}

// check pulls every image from reg by tag and by digest and checks each
// digest, each blob, and the referrers against what was pushed to A.
func (s *airgapSite) check(t *testing.T, reg string) {
	t.Helper()
	for repo, tags := range map[string]map[string]string{
		"team/app":   {"1": "app"},
		"team/tool":  {"2": "tool", s.toolSigTag: "toolCosign"},
		"team/multi": {"3": "multi"},
	} {
		for tag, key := range tags {
			want := s.digests[key]
			for _, r := range []string{reg + "/" + repo + ":" + tag, reg + "/" + repo + "@" + want} {
				desc := mustv(remote.Get(ref(t, r)))(t)
				if desc.Digest.String() != want {
					t.Errorf("%s: digest %s, want %s", r, desc.Digest, want)
				}
				if desc.MediaType.IsIndex() {
					idx := mustv(desc.ImageIndex())(t)
					for _, child := range mustv(idx.IndexManifest())(t).Manifests {
						checkBlobs(t, mustv(idx.Image(child.Digest))(t))
					}
				} else {
					checkBlobs(t, mustv(desc.Image())(t))
				}
			}
		}
	}
	for _, c := range []struct{ repo, subject, referrer string }{
		{"team/app", "app", "appSig"},
		{"team/multi", "multi", "multiSig"},
	} {
		d := ref(t, reg+"/"+c.repo+"@"+s.digests[c.subject]).(name.Digest)
		idx := mustv(remote.Referrers(d))(t)
		m := mustv(idx.IndexManifest())(t)
		if len(m.Manifests) != 1 || m.Manifests[0].Digest.String() != s.digests[c.referrer] {
			t.Errorf("referrers of %s on %s: %+v, want %s", c.subject, reg, m.Manifests, s.digests[c.referrer])
		}
		if len(m.Manifests) == 1 && m.Manifests[0].ArtifactType != "application/vnd.example.signature.v1+json" {
			t.Errorf("referrer of %s has artifactType %q", c.subject, m.Manifests[0].ArtifactType)
		}
		// And the referrer itself, byte for byte, with its blobs.
		checkBlobs(t, mustv(remote.Image(ref(t, reg+"/"+c.repo+"@"+s.digests[c.referrer])))(t))
	}
}

// checkBlobs fetches the config and every layer of img and checks each
// against its digest.
func checkBlobs(t *testing.T, img v1.Image) {
	t.Helper()
	cfg := mustv(img.RawConfigFile())(t)
	if got, want := sha256Of(t, bytes.NewReader(cfg)), mustv(img.ConfigName())(t); got != want {
		t.Errorf("config %s hashes to %s", want, got)
	}
	for _, l := range mustv(img.Layers())(t) {
		rc := mustv(l.Compressed())(t)
		got := sha256Of(t, rc)
		rc.Close()
		if want := mustv(l.Digest())(t); got != want {
			t.Errorf("layer %s hashes to %s", want, got)
		}
	}
}

func sha256Of(t *testing.T, r io.Reader) v1.Hash {
	t.Helper()
	h, _, err := v1.SHA256(r)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// storageSnapshot lists every file under dir with its size and mtime.
func storageSnapshot(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		lines = append(lines, fmt.Sprintf("%s %d %d %s", rel, fi.Size(), fi.ModTime().UnixNano(), fi.Mode()))
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestAirgapRoundTrip is the air-gapped workflow: images pushed
// to registry A are saved into one bundle, imported into an empty
// registry B with no server running (twice: the second is a no-op), and
// served by B with every digest unchanged; the same bundle also goes over
// HTTP into a registry C with imgtool copy.
func TestAirgapRoundTrip(t *testing.T) {
	a := startRegistry(t, t.TempDir(), "--access-log=false")
	site := pushSite(t, a.addr)

	c := newCLI(t)
	bundle := filepath.Join(t.TempDir(), "bundle.tar")
	list := filepath.Join(t.TempDir(), "images.txt")
	os.WriteFile(list, []byte("# site B\ndocker://"+a.addr+"/team/tool:2\n\n"+a.addr+"/team/multi:3   # whole index\n"), 0o644)
	c.ok("save", "--with-referrers", "--images-from", list, "-o", bundle, a.addr+"/team/app:1")

	// One copy of each blob; the index lists each image by full name.
	names, small := tarMembers(t, bundle)
	var idx struct{ Manifests []v1.Descriptor }
	if err := json.Unmarshal(small["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range idx.Manifests {
		got[d.Annotations["io.containerd.image.name"]] = d.Digest.String()
		if rn := d.Annotations["org.opencontainers.image.ref.name"]; rn != d.Annotations["io.containerd.image.name"] {
			t.Errorf("%s: ref.name %q is not the full reference", d.Digest, rn)
		}
	}
	want := map[string]string{
		a.addr + "/team/app:1":                             site.digests["app"],
		a.addr + "/team/tool:2":                            site.digests["tool"],
		a.addr + "/team/multi:3":                           site.digests["multi"],
		a.addr + "/team/app@" + site.digests["appSig"]:     site.digests["appSig"],
		a.addr + "/team/multi@" + site.digests["multiSig"]: site.digests["multiSig"],
		a.addr + "/team/tool:" + site.toolSigTag:           site.digests["toolCosign"],
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("bundle index.json names\n%v\nwant\n%v", got, want)
	}
	for _, l := range site.sharedLayers {
		if !names["blobs/sha256/"+l.Hex] {
			t.Errorf("shared layer %s missing from the bundle", l)
		}
	}

	// The bundle also loads into a local store, referrers by digest.
	l := newCLI(t)
	l.ok("load", "-i", bundle)
	if loaded := l.images(); len(loaded) != len(want) || loaded[a.addr+"/team/app@"+site.digests["appSig"]].Digest != site.digests["appSig"] {
		t.Errorf("loaded %v", loaded)
	}

	// Disconnected side: import with no server, twice.
	b := newCLI(t)
	out := b.ok("registry", "import", bundle)
	if importStatus(out, "imported") != 6 {
		t.Errorf("first import:\n%s", out)
	}
	if !strings.Contains(out, "team/app") || !strings.Contains(out, site.digests["multi"]) || !strings.Contains(out, "refers to "+site.digests["app"]) {
		t.Errorf("import report lacks repositories, digests or subjects:\n%s", out)
	}
	before := storageSnapshot(t, filepath.Join(b.root, "registry"))
	var second struct {
		Images                     []struct{ Repository, Tag, Digest, Subject, Status string }
		BlobsWritten, BlobsPresent int
	}
	if err := json.Unmarshal([]byte(b.ok("registry", "import", "--format", "json", bundle)), &second); err != nil {
		t.Fatal(err)
	}
	gotImported := map[string]string{}
	for _, im := range second.Images {
		if im.Status != "present" {
			t.Errorf("second import: %+v", im)
		}
		n := a.addr + "/" + im.Repository + ":" + im.Tag
		if im.Tag == "" {
			n = a.addr + "/" + im.Repository + "@" + im.Digest
		}
		gotImported[n] = im.Digest
	}
	if fmt.Sprint(gotImported) != fmt.Sprint(want) || second.BlobsWritten != 0 || second.BlobsPresent == 0 {
		t.Errorf("second import reported %v (%d blobs written, %d present), want %v", gotImported, second.BlobsWritten, second.BlobsPresent, want)
	}
	if after := storageSnapshot(t, filepath.Join(b.root, "registry")); after != before {
		t.Errorf("second import changed storage:\nbefore\n%s\nafter\n%s", before, after)
	}

	// Hostile bundles change nothing, in an empty registry or in B. (A
	// blob B already has is not read again, so a corrupt copy of it in a
	// bundle is harmless there.)
	empty := newCLI(t)
	for _, hb := range hostileBundles(t, bundle, site) {
		for _, target := range []*cli{empty, b} {
			snap := storageSnapshot(t, filepath.Join(target.root, "registry"))
			r := target.run(nil, "registry", "import", hb.path)
			if target == b && hb.name == "corrupt blob" {
				if r.code != 0 {
					t.Errorf("%s into B: %s", hb.name, r.stderr)
				}
			} else if r.code != 1 || !strings.Contains(r.stderr, hb.want) || !strings.Contains(r.stderr, "nothing was written") {
				t.Errorf("%s: exit %d, error %q does not say %q", hb.name, r.code, r.stderr, hb.want)
			}
			if after := storageSnapshot(t, filepath.Join(target.root, "registry")); after != snap {
				t.Errorf("%s changed storage:\n%s\n%s", hb.name, snap, after)
			}
		}
	}

	srvB := startRegistry(t, b.root, "--access-log=false")
	site.check(t, srvB.addr)

	// Over HTTP: the whole bundle into registry C.
	srvC := startRegistry(t, t.TempDir(), "--access-log=false")
	out = c.ok("copy", "oci-archive:"+bundle, "docker://"+srvC.addr)
	if n := strings.Count(out, "sha256:"); n != 6 {
		t.Errorf("copy printed %d digests:\n%s", n, out)
	}
	site.check(t, srvC.addr)
}

// importStatus counts the images registry import reported with status.
func importStatus(out, status string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "team/") && strings.Contains(line, "  "+status) {
			n++
		}
	}
	return n
}
