// Command regload puts one kind of load on an OCI registry for
// bench/registry.sh, which runs it against imgtool's registry and its
// peers side by side. It speaks the distribution API with net/http the way
// docker and containerd do (POST, streamed PATCH, PUT ?digest=) and prints
// one line: "<ops> <seconds> <bytes>".
//
//	regload -reg HOST:PORT -mode blobs-push|blobs-pull -n 8 -size 134217728 -c 8
//	regload -reg HOST:PORT -mode images -n 200 -c 16 [-repo NAME]
//	regload -reg HOST:PORT -mode head -c 32 -duration 10s
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

type load struct {
	reg, repo string
	n, c      int
	size      int64
	client    *http.Client
}

func main() {
	var l load
	flag.StringVar(&l.reg, "reg", "", "registry host:port (plain HTTP)")
	flag.StringVar(&l.repo, "repo", "bench/load", "repository")
	mode := flag.String("mode", "", "blobs-push, blobs-pull, images or head")
	flag.IntVar(&l.n, "n", 8, "blobs or images")
	flag.IntVar(&l.c, "c", 8, "concurrent connections")
	flag.Int64Var(&l.size, "size", 128<<20, "blob size in bytes")
	first := flag.Int("first", 0, "number of the first blob: rounds of blobs-push with -first 0, n, 2n ... push distinct blobs")
	dur := flag.Duration("duration", 10*time.Second, "how long head runs")
	flag.Parse()
	l.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: l.c, MaxConnsPerHost: l.c, DisableCompression: true}}
	ctx := context.Background()
	var big *bigBlobs
	var err error
	if strings.HasPrefix(*mode, "blobs-") {
		if big, err = newBigBlobs(*first, l.n, l.size); err != nil {
			fmt.Fprintf(os.Stderr, "regload: %v\n", err)
			os.Exit(1)
		}
	}
	start := time.Now()
	var ops, nbytes int64
	switch *mode {
	case "blobs-push":
		ops, nbytes, err = l.each(ctx, l.n, func(i int) (int64, error) { return l.pushBlob(ctx, big, i) })
	case "blobs-pull":
		ops, nbytes, err = l.each(ctx, l.n, func(i int) (int64, error) { return l.pullBlob(ctx, big, i) })
	case "images":
		ops, nbytes, err = l.each(ctx, l.n, func(i int) (int64, error) { return l.pushImage(ctx, i) })
	case "head":
		ops, err = l.head(ctx, *dur)
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "regload: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%d %.3f %d\n", ops, time.Since(start).Seconds(), nbytes)
}

// each runs fn for 0..n-1 on l.c workers.
func (l *load) each(ctx context.Context, n int, fn func(int) (int64, error)) (int64, int64, error) {
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(l.c)
	var total atomic.Int64
	for i := range n {
		g.Go(func() error {
			b, err := fn(i)
			total.Add(b)
			return err
		})
	}
	err := g.Wait()
	return int64(n), total.Load(), err
}

// blob is seeded random content, regenerated rather than held in memory:
// the small images' layers.
type blob struct {
	size int64
	seed uint64
}

func (b blob) reader() io.Reader {
	return io.LimitReader(rand.NewChaCha8(seed(b.seed)), b.size)
}

func seed(n uint64) [32]byte {
	var s [32]byte
	copy(s[:], fmt.Sprintf("regload-%d", n))
	return s
}

func (b blob) digest() (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, b.reader()); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// bigBlobs are the blobs of blobs-push and blobs-pull: one random body in
// memory, each blob that body followed by its own 8-byte index, and every
// digest known before the clock starts. A pushing client has its digests
// already (docker computes them while it builds the layer) and does not
// spend its time making bytes up; both would otherwise take as much of
// this machine's CPU as the server under test does, the same for every
// server, and so squeeze the servers' ratios towards 1.
type bigBlobs struct {
	body    []byte
	first   int      // blob i ends in the number first+i
	digests []string // of blobs first ... first+n-1
}

func newBigBlobs(first, n int, size int64) (*bigBlobs, error) {
	if size < 8 {
		return nil, fmt.Errorf("blob size %d: at least 8 bytes", size)
	}
	b := &bigBlobs{body: make([]byte, size-8), first: first}
	if _, err := io.ReadFull(rand.NewChaCha8(seed(0)), b.body); err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(b.body)
	// The shared prefix is hashed once; each digest resumes from its state.
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	for i := range n {
		hi := sha256.New()
		if err := hi.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
			return nil, err
		}
		hi.Write(suffix(first + i))
		b.digests = append(b.digests, "sha256:"+hex.EncodeToString(hi.Sum(nil)))
	}
	return b, nil
}

func suffix(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }

func (b *bigBlobs) reader(i int) io.Reader {
	return io.MultiReader(bytes.NewReader(b.body), bytes.NewReader(suffix(b.first+i)))
}

func (l *load) do(ctx context.Context, method, url string, body io.Reader, want int, hdr ...string) (*http.Response, error) {
	if !strings.HasPrefix(url, "http") {
		url = "http://" + l.reg + url
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %s %s", method, url, resp.Status, msg)
	}
	return resp, nil
}

// upload pushes content as docker does: POST, one streamed PATCH, PUT.
func (l *load) upload(ctx context.Context, body io.Reader, digest string) error {
	resp, err := l.do(ctx, "POST", "/v2/"+l.repo+"/blobs/uploads/", nil, http.StatusAccepted)
	if err != nil {
		return err
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp, err = l.do(ctx, "PATCH", loc, body, http.StatusAccepted, "Content-Type", "application/octet-stream"); err != nil {
		return err
	}
	resp.Body.Close()
	loc = resp.Header.Get("Location")
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	if resp, err = l.do(ctx, "PUT", loc+sep+"digest="+digest, nil, http.StatusCreated); err != nil {
		return err
	}
	return resp.Body.Close()
}

func (l *load) pushBlob(ctx context.Context, b *bigBlobs, i int) (int64, error) {
	return l.size, l.upload(ctx, b.reader(i), b.digests[i])
}

func (l *load) pullBlob(ctx context.Context, b *bigBlobs, i int) (int64, error) {
	d := b.digests[i]
	resp, err := l.do(ctx, "GET", "/v2/"+l.repo+"/blobs/"+d, nil, http.StatusOK)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return n, err
	}
	return n, check(h, d)
}

func check(h hash.Hash, want string) error {
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("pulled %s, got %s", want, got)
	}
	return nil
}

// pushImage pushes a small image (a config, one 16 KiB layer, a manifest
// by tag), as a CI pipeline pushing many little images does.
func (l *load) pushImage(ctx context.Context, i int) (int64, error) {
	layer := blob{16 << 10, uint64(1_000_000 + i)}
	ld, err := layer.digest()
	if err != nil {
		return 0, err
	}
	if err := l.upload(ctx, layer.reader(), ld); err != nil {
		return 0, err
	}
	cfg := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]},"config":{"Env":["N=%d"]}}`, ld, i)
	cd := fmt.Sprintf("sha256:%x", sha256.Sum256(cfg))
	if err := l.upload(ctx, strings.NewReader(string(cfg)), cd); err != nil {
		return 0, err
	}
	m, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.size}},
	})
	if err != nil {
		return 0, err
	}
	resp, err := l.do(ctx, "PUT", fmt.Sprintf("/v2/%s/manifests/t%d", l.repo, i), strings.NewReader(string(m)),
		http.StatusCreated, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if err != nil {
		return 0, err
	}
	return layer.size + int64(len(cfg)+len(m)), resp.Body.Close()
}

// head pushes one image, then HEADs its manifest by tag on l.c
// connections for d.
func (l *load) head(ctx context.Context, d time.Duration) (int64, error) {
	if _, err := l.pushImage(ctx, 0); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(d)
	var ops atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, l.c)
	for range l.c {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				resp, err := l.do(ctx, "HEAD", "/v2/"+l.repo+"/manifests/t0", nil, http.StatusOK,
					"Accept", "application/vnd.oci.image.manifest.v1+json")
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				ops.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	return ops.Load(), <-errs
}
