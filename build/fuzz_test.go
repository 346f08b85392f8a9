package build

import (
	"strings"
	"testing"

	"github.com/imgtool/imgtool/manifest"
)

// FuzzPlan feeds hostile Dockerfiles through parsing, ARG evaluation and
// stage pruning: errors are fine, panics and hangs are not.
func FuzzPlan(f *testing.F) {
	for _, seed := range []string{
		"FROM a\n",
		"ARG B=x\nFROM $B AS s\nFROM s\nCOPY --from=s / /\n",
		"FROM a AS x\nFROM x AS y\nFROM y AS x\n",
		"# escape=`\nFROM a\nRUN echo `\n  hi\n",
		"FROM a\nRUN <<EOF\necho\nEOF\n",
		"FROM a\nRUN --mount=type=cache,target=/c,from=0 true\n",
		"ARG A=${A:-${A}}\nFROM ${A:?unset}\n",
		"FROM a\nONBUILD ONBUILD RUN x\n",
		"FROM a\nCOPY --from=999999999999999999999 / /\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, df string) {
		p, err := parseDockerfile("Dockerfile", []byte(df))
		if err != nil {
			return
		}
		r := &buildRun{plan: p, req: Request{Platform: manifest.Native()}, usedArgs: map[string]bool{}}
		meta, err := r.metaArgs()
		if err != nil {
			return
		}
		for i := range p.stages {
			_, _ = p.needed(i, meta.expander(p.escape))
		}
	})
}

// FuzzCacheRecords feeds hostile registry caches (manifest and records)
// through their parsing: every record kept has a valid key, and a layer
// only as the manifest lists it.
func FuzzCacheRecords(f *testing.F) {
	l := `{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:` + strings.Repeat("a", 64) + `","size":3}`
	m := `{"schemaVersion":2,"config":{"mediaType":"` + CacheConfigMediaType + `","digest":"sha256:` + strings.Repeat("b", 64) + `","size":2},"layers":[` + l + `]}`
	key := `"sha256:` + strings.Repeat("c", 64) + `"`
	f.Add(m, `{"records":[{"key":`+key+`,"layer":{"digest":"sha256:`+strings.Repeat("a", 64)+`","size":3,"DiffID":"sha256:`+strings.Repeat("d", 64)+`"}}]}`)
	f.Add(m, `{"records":[{"key":`+key+`,"layer":{"digest":"sha256:`+strings.Repeat("e", 64)+`","size":3,"DiffID":"sha256:`+strings.Repeat("d", 64)+`"}}]}`)
	f.Add(m, `{"records":[{"key":"md5:x"},{"key":`+key+`,"created":"2020-01-01T00:00:00Z"}]}`)
	f.Add(`{"config":{"mediaType":"application/vnd.oci.image.config.v1+json"}}`, `{}`)
	f.Add(`[`, `null`)
	f.Fuzz(func(t *testing.T, mraw, craw string) {
		man, err := parseCacheManifest([]byte(mraw))
		if err != nil {
			return
		}
		recs, err := cacheRecords(man, []byte(craw))
		if err != nil {
			return
		}
		for _, r := range recs {
			if r.Key.Validate() != nil {
				t.Fatalf("kept a record with key %q", r.Key)
			}
			if r.Layer == nil {
				continue
			}
			listed := false
			for _, ml := range man.Layers {
				listed = listed || ml.Digest == r.Layer.Digest && ml.Size == r.Layer.Size && ml.MediaType == r.Layer.MediaType
			}
			if !listed || r.Layer.DiffID.Validate() != nil {
				t.Fatalf("kept layer %+v the manifest does not list as such", r.Layer)
			}
		}
	})
}
