// Command regmin is bench/registry.sh's minimal registry for a blob
// push: only what any registry that verifies and durably stores a blob
// must do. It answers the three requests of a docker-style push (POST,
// streamed PATCH, PUT ?digest=) by reading the body, hashing it with
// SHA-256, writing it to a file, and at the PUT comparing the digest,
// fsyncing the file and renaming it to its digest; no storage driver, no
// upload state, no links, no checks of names or ranges, and no writing
// behind (the disk starts on a blob at its fsync).
//
// With the storage on tmpfs that is the floor of CPU per pushed byte, so
// a server near it has nothing left to cut but copies and the hash; on a
// disk a server that writes behind beats it, which shows what that is
// worth. It is a measuring instrument, not a registry: never serve
// anything with it.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"hash"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5000", "loopback address to listen on")
	dir := flag.String("dir", "", "directory to store blobs in")
	flag.Parse()
	if *dir == "" || !strings.HasPrefix(*addr, "127.0.0.1:") {
		log.Fatal("regmin needs -dir and a 127.0.0.1 -addr")
	}
	s := &server{dir: *dir, uploads: map[string]hash.Hash{}}
	log.Fatal(http.ListenAndServe(*addr, s))
}

type server struct {
	dir  string
	next atomic.Int64

	mu      sync.Mutex
	uploads map[string]hash.Hash // by upload ID: the bytes received so far
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var err error
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
		err = s.start(w)
	case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/upload/"):
		err = s.patch(w, r, strings.TrimPrefix(r.URL.Path, "/upload/"))
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/upload/"):
		err = s.put(w, r, strings.TrimPrefix(r.URL.Path, "/upload/"))
	default:
		http.Error(w, "regmin only takes a push", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
}

func (s *server) start(w http.ResponseWriter) error {
	id := fmt.Sprint(s.next.Add(1))
	f, err := os.Create(s.path(id))
	if err != nil {
		return err
	}
	f.Close()
	s.mu.Lock()
	s.uploads[id] = sha256.New()
	s.mu.Unlock()
	w.Header().Set("Location", "/upload/"+id)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (s *server) hash(id string) (hash.Hash, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.uploads[id]
	if !ok {
		return nil, fmt.Errorf("no upload %q", id)
	}
	return h, nil
}

func (s *server) patch(w http.ResponseWriter, r *http.Request, id string) error {
	h, err := s.hash(id)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(s.path(id), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := store(f, h, r.Body); err != nil {
		return err
	}
	w.Header().Set("Location", "/upload/"+id)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (s *server) put(w http.ResponseWriter, r *http.Request, id string) error {
	h, err := s.hash(id)
	if err != nil {
		return err
	}
	want := r.URL.Query().Get("digest")
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("content has digest %s, not %s", got, want)
	}
	f, err := os.OpenFile(s.path(id), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(s.path(id), s.path(strings.TrimPrefix(want, "sha256:"))); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.uploads, id)
	s.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
	return nil
}

// store writes body to f and hashes it in whole pieces of bufSize bytes:
// a chunked body's reads end at its chunk boundaries, and passing those
// small reads on as they come costs a write system call each.
func store(f *os.File, h hash.Hash, body io.Reader) error {
	buf := make([]byte, bufSize)
	for {
		n, err := io.ReadFull(body, buf)
		if n > 0 {
			h.Write(buf[:n])
			if _, werr := f.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

const bufSize = 32 << 10

// path is where upload id, or a blob by its hex digest, lives: both are
// names regmin made or checked, so nothing leaves dir.
func (s *server) path(name string) string {
	if !isName(name) {
		name = "invalid"
	}
	return filepath.Join(s.dir, name)
}

func isName(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != ""
}
