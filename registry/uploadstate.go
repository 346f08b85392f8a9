package registry

import (
	"context"
	"crypto/rand"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// uploadState is what any replica needs to continue an upload: how many
// bytes the state's hash has seen, and the hash itself, serialized, so
// that finishing does not re-read the upload from storage.
type uploadState struct {
	Algorithm digest.Algorithm `json:"algorithm"`
	Offset    int64            `json:"offset"`
	Hash      []byte           `json:"hash"`
	Started   time.Time        `json:"started"`
}

// upload is one open upload session: its state and the hash restored from it.
type upload struct {
	name, id string
	state    uploadState
	hash     hash.Hash
}

func newUploadID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make upload id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// createUpload starts a session hashing with alg. The data is opened as
// resumable uploads are (a writer closed without commit, appended to by
// later requests), before the state, whose presence makes the upload exist.
func (g *Registry) createUpload(ctx context.Context, name string, alg digest.Algorithm) (*upload, error) {
	id, err := newUploadID()
	if err != nil {
		return nil, err
	}
	u := &upload{name: name, id: id, state: uploadState{Algorithm: alg, Started: time.Now().UTC()}, hash: alg.Hash()}
	fw, err := g.driver.Writer(ctx, uploadDataPath(name, id), false)
	if err != nil {
		return nil, fmt.Errorf("create upload in %s: %w", name, err)
	}
	if err := fw.Close(); err != nil {
		return nil, fmt.Errorf("create upload in %s: %w", name, err)
	}
	if err := g.saveUpload(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

func (g *Registry) saveUpload(ctx context.Context, u *upload) error {
	m, ok := u.hash.(encoding.BinaryMarshaler)
	if !ok {
		return fmt.Errorf("save upload %s: %s hash state cannot be serialized", u.id, u.state.Algorithm)
	}
	st, err := m.MarshalBinary()
	if err != nil {
		return fmt.Errorf("save upload %s: %w", u.id, err)
	}
	u.state.Hash = st
	raw, err := json.Marshal(u.state)
	if err != nil {
		return fmt.Errorf("save upload %s: %w", u.id, err)
	}
	if err := g.driver.PutContent(ctx, uploadStatePath(u.name, u.id), raw); err != nil {
		return fmt.Errorf("save upload %s: %w", u.id, err)
	}
	return nil
}

// openUpload restores session id of repository name and opens its data
// for appending; the writer's size is the truth about how much arrived
// (drivers know it without a read, even mid-way through a multipart
// upload). Its hash is brought up to that size: a crash or a broken
// connection after data was appended but before the state was saved
// leaves the state behind the data, never ahead of it.
func (g *Registry) openUpload(ctx context.Context, name, id string) (*upload, storagedriver.FileWriter, error) {
	u, err := g.loadState(ctx, name, id)
	if err != nil {
		return nil, nil, err
	}
	fw, err := g.driver.Writer(ctx, uploadDataPath(name, id), true)
	if err != nil {
		if isNotFound(err) {
			return nil, nil, newError(errBlobUploadUnknown, "upload %s unknown to repository %s", id, name)
		}
		return nil, nil, fmt.Errorf("open upload %s: %w", id, err)
	}
	size := fw.Size()
	if size < u.state.Offset {
		u.state.Offset, u.hash = 0, u.state.Algorithm.Hash()
	}
	if size > u.state.Offset {
		if err := g.hashData(ctx, u, u.state.Offset, size, u.hash); err != nil {
			fw.Close()
			return nil, nil, err
		}
		u.state.Offset = size
	}
	return u, fw, nil
}

// loadState reads the state of session id; a missing or unusable hash
// state means rehashing from the start.
func (g *Registry) loadState(ctx context.Context, name, id string) (*upload, error) {
	unknown := newError(errBlobUploadUnknown, "upload %s unknown to repository %s", id, name)
	if !uploadRE().MatchString(id) {
		return nil, unknown
	}
	raw, err := g.driver.GetContent(ctx, uploadStatePath(name, id))
	if err != nil {
		if isNotFound(err) {
			return nil, unknown
		}
		return nil, fmt.Errorf("load upload %s: %w", id, err)
	}
	u := &upload{name: name, id: id}
	if err := json.Unmarshal(raw, &u.state); err != nil {
		return nil, fmt.Errorf("load upload %s: state: %w", id, err)
	}
	if !u.state.Algorithm.Available() {
		return nil, fmt.Errorf("load upload %s: algorithm %q unavailable", id, u.state.Algorithm)
	}
	u.hash = u.state.Algorithm.Hash()
	if um, ok := u.hash.(encoding.BinaryUnmarshaler); !ok || um.UnmarshalBinary(u.state.Hash) != nil {
		u.state.Offset = 0
		u.hash = u.state.Algorithm.Hash()
	}
	return u, nil
}

// hashData feeds the upload's stored bytes [offset, end) into h. Bytes
// that cannot be read back are an error the client can act on: S3 keeps
// an unfinished upload as a multipart upload whose parts no request can
// read, so there a state that fell behind its data (a replica stopped
// between the two writes, or a storage error mid-chunk) cannot catch up,
// and the client has to start over.
func (g *Registry) hashData(ctx context.Context, u *upload, offset, end int64, h hash.Hash) error {
	rc, err := g.driver.Reader(ctx, uploadDataPath(u.name, u.id), offset)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("read upload %s: %w", u.id, err)
	}
	var n int64
	if err == nil {
		defer rc.Close()
		if n, err = io.Copy(h, io.LimitReader(rc, end-offset)); err != nil {
			return fmt.Errorf("read upload %s: %w", u.id, err)
		}
	}
	if n != end-offset {
		return newError(errBlobUploadInvalid, "upload %s cannot be resumed: %d stored bytes after offset %d cannot be read back; start a new upload", u.id, end-offset-n, offset+n)
	}
	return nil
}

// digestOf returns the digest of everything uploaded, using alg: the saved
// hash when it is alg's, else a pass over the stored bytes.
func (g *Registry) digestOf(ctx context.Context, u *upload, alg digest.Algorithm) (digest.Digest, error) {
	if alg == u.state.Algorithm {
		return digest.NewDigest(alg, u.hash), nil
	}
	h := alg.Hash()
	if err := g.hashData(ctx, u, 0, u.state.Offset, h); err != nil {
		return "", err
	}
	return digest.NewDigest(alg, h), nil
}

// abortUpload deletes an unfinished session: its data writer is cancelled
// first, since on S3 the bytes of an unfinished upload are an open
// multipart upload, which deleting the session's objects leaves behind,
// kept (and billed) until aborted.
func (g *Registry) abortUpload(ctx context.Context, name, id string) error {
	if fw, err := g.driver.Writer(ctx, uploadDataPath(name, id), true); err == nil {
		if err := fw.Cancel(ctx); err != nil && !isNotFound(err) {
			return fmt.Errorf("abort upload %s: %w", id, err)
		}
	}
	return g.deleteUpload(ctx, name, id)
}

func (g *Registry) deleteUpload(ctx context.Context, name, id string) error {
	if err := g.driver.Delete(ctx, uploadPath(name, id)); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete upload %s: %w", id, err)
	}
	return nil
}
