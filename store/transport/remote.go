package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrExists is returned by Destination.Write when it found the content
// already there without reading it.
var ErrExists = errors.New("already exists")

// RemoteOptions configure registry access.
type RemoteOptions struct {
	// Insecure allows plain HTTP and unverified TLS for every registry.
	// Loopback and localhost registries get plain HTTP without it, as
	// docker does.
	Insecure bool
	// Keychain finds credentials (nil: ~/.docker/config.json and credential
	// helpers, then the podman auth files).
	Keychain authn.Keychain
	// UserAgent names the client to registries.
	UserAgent string
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
}

func (o RemoteOptions) parse(ref string) (name.Reference, error) {
	var opts []name.Option
	if o.Insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("parse reference %q: %w (want [REGISTRY/]REPOSITORY[:TAG|@DIGEST], in lower case)", ref, err)
	}
	return r, nil
}

func (o RemoteOptions) remote() []remote.Option {
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	tr := o.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		if o.Insecure {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for --insecure
		}
		// Large socket buffers matter more than anything else for
		// throughput on fast links; the defaults are tuned for small
		// API calls.
		t.WriteBufferSize, t.ReadBufferSize = 1<<20, 1<<20
		tr = t
	}
	opts := []remote.Option{remote.WithAuthFromKeychain(kc), remote.WithTransport(tr)}
	if o.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(o.UserAgent))
	}
	return opts
}

type remoteSource struct {
	ref    name.Reference
	puller *remote.Puller
	opts   []remote.Option
	roots  map[digest.Digest][]byte
}

func openRemoteSource(loc Location, o RemoteOptions) (Source, error) {
	ref, err := o.parse(loc.Ref)
	if err != nil {
		return nil, err
	}
	opts := o.remote()
	p, err := remote.NewPuller(opts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return &remoteSource{ref: ref, puller: p, opts: opts, roots: map[digest.Digest][]byte{}}, nil
}

func (r *remoteSource) Images(ctx context.Context) ([]store.Image, error) {
	desc, err := r.puller.Get(ctx, r.ref)
	if err != nil {
		return nil, explainRemote("pull", r.ref, err)
	}
	d := ociDescriptor(desc.Descriptor)
	if !manifest.IsManifestOrIndex(d.MediaType) {
		return nil, fmt.Errorf("pull %s: %q is not an image manifest or index", r.ref, d.MediaType)
	}
	r.roots[d.Digest] = desc.Manifest
	return []store.Image{{Name: store.Canonical(r.ref), Descriptor: d}}, nil
}

func (r *remoteSource) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	ref := r.ref.Context().Digest(d.Digest.String())
	if manifest.IsManifestOrIndex(d.MediaType) {
		if raw, ok := r.roots[d.Digest]; ok {
			return io.NopCloser(bytesReader(raw)), nil
		}
		desc, err := r.puller.Get(ctx, ref)
		if err != nil {
			return nil, explainRemote("pull", ref, err)
		}
		return io.NopCloser(bytesReader(desc.Manifest)), nil
	}
	l, err := r.puller.Layer(ctx, ref)
	if err != nil {
		return nil, explainRemote("pull blob", ref, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, explainRemote("pull blob", ref, err)
	}
	return rc, nil
}

func (r *remoteSource) Close() error { return nil }

type remoteDest struct {
	ref    name.Reference
	pusher *remote.Pusher
	puller *remote.Puller
}

func openRemoteDest(loc Location, o RemoteOptions) (Destination, error) {
	ref, err := o.parse(loc.Ref)
	if err != nil {
		return nil, err
	}
	p, err := remote.NewPusher(o.remote()...)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", ref, err)
	}
	pl, err := remote.NewPuller(o.remote()...)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", ref, err)
	}
	return &remoteDest{ref: ref, pusher: p, puller: pl}, nil
}

// Has asks the registry about manifests only: for blobs, the upload itself
// starts with a HEAD and never reads the source when the blob is there.
func (r *remoteDest) Has(ctx context.Context, d ocispec.Descriptor) (bool, error) {
	if !manifest.IsManifestOrIndex(d.MediaType) {
		return false, nil
	}
	_, err := r.puller.Head(ctx, r.ref.Context().Digest(d.Digest.String()))
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		return false, nil
	}
	return false, explainRemote("push", r.ref, err)
}

func (r *remoteDest) Write(ctx context.Context, d ocispec.Descriptor, open Opener) error {
	if manifest.IsManifestOrIndex(d.MediaType) {
		raw, err := readAll(open)
		if err != nil {
			return err
		}
		ref := r.ref.Context().Digest(d.Digest.String())
		if err := r.pusher.Put(ctx, ref, rawManifest{raw: raw, mt: d.MediaType}); err != nil {
			return explainRemote("push manifest", ref, err)
		}
		return nil
	}
	l := &blobLayer{d: d, open: open}
	if err := r.pusher.Upload(ctx, r.ref.Context(), l); err != nil {
		return explainRemote("push blob "+d.Digest.String()+" to", r.ref, err)
	}
	if !l.opened.Load() {
		return ErrExists
	}
	return nil
}

func (r *remoteDest) Tag(ctx context.Context, _ string, d ocispec.Descriptor, raw []byte) error {
	if _, ok := r.ref.(name.Tag); !ok {
		return nil // pushed by digest: nothing to name
	}
	if err := r.pusher.Put(ctx, r.ref, rawManifest{raw: raw, mt: d.MediaType}); err != nil {
		return explainRemote("tag", r.ref, err)
	}
	return nil
}

func (r *remoteDest) Close() error { return nil }
func (r *remoteDest) Abort() error { return nil }

func ociDescriptor(d v1.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{
		MediaType:    string(d.MediaType),
		Digest:       digest.Digest(d.Digest.String()),
		Size:         d.Size,
		Annotations:  d.Annotations,
		ArtifactType: d.ArtifactType,
	}
}

type rawManifest struct {
	raw []byte
	mt  string
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(m.mt), nil }
