package registry

import (
	"fmt"
	"path"
	"regexp"
	"sync"

	"github.com/opencontainers/go-digest"
)

// The repository layout, written through a storagedriver.StorageDriver
// (after distribution's registry/storage/paths.go, but imgtool's own):
//
//	/imgtool/v1
//	├── _gc                                      garbage collection (gcguard.go)
//	│   ├── <run>/<algorithm>/<hex>              sweep markers of a running collection
//	│   └── done                                 rewritten as each collection ends
//	├── blobs                                    content, deduplicated across repositories
//	│   └── <algorithm>/<first two hex>/<hex>
//	│       └── data                             the bytes; written only once verified
//	└── repositories
//	    └── <name>                               one or more path components
//	        ├── _layers/<algorithm>/<hex>/link   the repository may serve this blob
//	        ├── _manifests
//	        │   ├── revisions/<algorithm>/<hex>/link   manifest in the repository;
//	        │   │                                      holds its descriptor (JSON)
//	        │   └── tags/<tag>/link              the digest the tag points to
//	        ├── _referrers/<algorithm>/<hex>     subject digest
//	        │   └── <algorithm>/<hex>/link       a referrer's descriptor (JSON)
//	        └── _uploads/<id>
//	            ├── data                         bytes received so far (appended)
//	            └── state                        offset and serialized hash state (JSON)
//
// Every write is data first, then the link that makes it visible: a crash
// leaves either the old state or the new one (plus, at worst, an unlinked
// blob for a later garbage collection). Names, tags, digests and upload ids
// are validated before they become path components, and their grammars
// cannot produce "..", "/" or a leading "_", so nothing escapes its place.
const layoutRoot = "/imgtool/v1"

// The grammars compile on first use: compiled at package initialisation
// they cost every imgtool process (imgtool run included) half a
// millisecond before main.
var (
	// nameRE is the distribution-spec's repository name grammar.
	nameRE = lazyRE(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	// tagRE is the spec's tag grammar.
	tagRE = lazyRE(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	// uploadRE matches the upload ids newUploadID makes.
	uploadRE = lazyRE(`^[0-9a-f]{32}$`)
)

func lazyRE(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

// maxNameLength bounds repository names as distribution does, keeping
// storage paths well under every backend's key length.
const maxNameLength = 255

func validName(name string) bool {
	return len(name) <= maxNameLength && nameRE().MatchString(name)
}

func validTag(tag string) bool { return tagRE().MatchString(tag) }

// parseDigest accepts the digests the registry can verify (sha256 and
// sha512) in their canonical encoding.
func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", err
	}
	if !supportedAlgorithm(d.Algorithm()) {
		return "", fmt.Errorf("digest algorithm %s is not supported (sha256 or sha512)", d.Algorithm())
	}
	return d, nil
}

// supportedAlgorithm tells whether alg is one of the two the OCI specs
// register. go-digest also knows sha384, which no client uses; refusing
// it keeps every endpoint's answer to it the same clear 400.
func supportedAlgorithm(alg digest.Algorithm) bool {
	return alg == digest.SHA256 || alg == digest.SHA512
}

func blobDataPath(d digest.Digest) string {
	hex := d.Encoded()
	return path.Join(layoutRoot, "blobs", string(d.Algorithm()), hex[:2], hex, "data")
}

func repoPath(name string) string { return path.Join(layoutRoot, "repositories", name) }

func repositoriesPath() string { return path.Join(layoutRoot, "repositories") }

func layerLinkPath(name string, d digest.Digest) string {
	return path.Join(repoPath(name), "_layers", string(d.Algorithm()), d.Encoded(), "link")
}

func revisionLinkPath(name string, d digest.Digest) string {
	return path.Join(repoPath(name), "_manifests", "revisions", string(d.Algorithm()), d.Encoded(), "link")
}

func tagsPath(name string) string { return path.Join(repoPath(name), "_manifests", "tags") }

func tagLinkPath(name, tag string) string { return path.Join(tagsPath(name), tag, "link") }

func referrersPath(name string, subject digest.Digest) string {
	return path.Join(repoPath(name), "_referrers", string(subject.Algorithm()), subject.Encoded())
}

func referrerLinkPath(name string, subject, d digest.Digest) string {
	return path.Join(referrersPath(name, subject), string(d.Algorithm()), d.Encoded(), "link")
}

func uploadPath(name, id string) string { return path.Join(repoPath(name), "_uploads", id) }

func uploadDataPath(name, id string) string { return path.Join(uploadPath(name, id), "data") }

func uploadStatePath(name, id string) string { return path.Join(uploadPath(name, id), "state") }
