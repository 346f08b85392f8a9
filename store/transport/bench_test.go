package transport_test

import (
	"context"
	"testing"

	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
)

// BenchmarkPull and BenchmarkPush move a 4 × 16 MiB image through the
// in-process registry on 127.0.0.1. bench/transfer.sh compares the whole
// binary with skopeo on larger images.
func BenchmarkPull(b *testing.B) {
	reg, ref, size := benchImage(b)
	src := transport.Location{Kind: transport.Registry, Ref: ref}
	b.SetBytes(size)
	for b.Loop() {
		s, err := store.Open(context.Background(), b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := copyOne(b, s, src, transport.Location{Kind: transport.Store}, "", transport.Options{}); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
	_ = reg
}

func BenchmarkPush(b *testing.B) {
	reg, ref, size := benchImage(b)
	s, err := store.Open(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := copyOne(b, s, transport.Location{Kind: transport.Registry, Ref: ref}, transport.Location{Kind: transport.Store}, "", transport.Options{}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	i := 0
	for b.Loop() {
		i++
		// A fresh registry each time, so that every blob is sent.
		dst := newRegistry(b)
		if _, err := copyOne(b, s, transport.Location{Kind: transport.Store, Ref: ref}, transport.Location{Kind: transport.Registry, Ref: dst.host() + "/bench/app:1"}, "", transport.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	_ = reg
}

func benchImage(b *testing.B) (*testRegistry, string, int64) {
	reg := newRegistry(b)
	ref := reg.host() + "/bench/app:1"
	img := pushRandomSize(b, ref, 16<<20, 4)
	m, err := img.Manifest()
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for _, l := range m.Layers {
		size += l.Size
	}
	return reg, ref, size
}
