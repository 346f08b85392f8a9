package registry

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// maxHtpasswdSize bounds what is read of a users file: a bcrypt line is
// about 80 bytes, so this is room for some hundred thousand users.
const maxHtpasswdSize = 8 << 20

// ErrNoSuchUser is RemoveUser's answer for a name the file does not hold.
var ErrNoSuchUser = errors.New("no such user")

// Authenticator checks a user name and password. Authenticate's error is
// for failures to check (not for wrong credentials, which are ok=false).
type Authenticator interface {
	Authenticate(ctx context.Context, user, password string) (ok bool, err error)
}

// Htpasswd authenticates against an htpasswd file of bcrypt hashes
// (`htpasswd -B`, or `imgtool registry user add`). It notices when the
// file is replaced or edited (inode, size, mtime; one stat per check) and
// re-reads it; a file that cannot be read or parsed any more is logged
// and the previous users stay in force, so an editor's half-written save
// neither locks everybody out nor lets anybody in.
type Htpasswd struct {
	path string
	log  *slog.Logger
	// key makes the verified-password cache worthless outside this process.
	key [32]byte
	// dummy is compared against for unknown users, so that a missing user
	// costs as much time as a wrong password and names cannot be probed.
	dummy []byte
	// bcrypts bounds concurrent bcrypt checks to the CPUs, so a flood of
	// wrong passwords from many addresses queues up instead of starving
	// the requests of users whose password is already verified.
	bcrypts chan struct{}

	mu       sync.Mutex
	stamp    fileStamp
	failed   fileStamp // stamp of the last file that failed to load, logged once
	users    map[string][]byte
	verified map[string][sha256.Size]byte
}

// OpenHtpasswd loads the users file at path; log receives reload errors.
func OpenHtpasswd(path string, log *slog.Logger) (*Htpasswd, error) {
	h := &Htpasswd{path: path, log: log, bcrypts: make(chan struct{}, runtime.GOMAXPROCS(0))}
	if _, err := rand.Read(h.key[:]); err != nil {
		return nil, err
	}
	dummy, err := bcrypt.GenerateFromPassword(h.key[:16], bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	h.dummy = dummy
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read htpasswd file: %w (create it with `imgtool registry user add NAME --htpasswd %s`)", err, path)
	}
	users, err := readHtpasswd(path)
	if err != nil {
		return nil, err
	}
	h.stamp, h.users, h.verified = stampOf(fi), users, map[string][sha256.Size]byte{}
	return h, nil
}

// Authenticate reports whether password is user's. bcrypt is slow by
// design (tens of milliseconds), and clients send credentials with every
// request of a push, so a password that matched once is remembered as an
// HMAC under a per-process key until the file changes.
func (h *Htpasswd) Authenticate(ctx context.Context, user, password string) (bool, error) {
	users, verified := h.current()
	mac := h.mac(user, password)
	h.mu.Lock()
	seen, ok := verified[user]
	h.mu.Unlock()
	if ok && hmac.Equal(seen[:], mac[:]) {
		return true, nil
	}
	select {
	case h.bcrypts <- struct{}{}:
		defer func() { <-h.bcrypts }()
	case <-ctx.Done():
		return false, ctx.Err()
	}
	hash, known := users[user]
	if !known {
		_ = bcrypt.CompareHashAndPassword(h.dummy, []byte(password))
		return false, nil
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil {
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, nil
		}
		return false, fmt.Errorf("check password of %q: %w", user, err)
	}
	h.mu.Lock()
	verified[user] = mac // verified is the map of this file version; a reload drops it
	h.mu.Unlock()
	return true, nil
}

func (h *Htpasswd) mac(user, password string) [sha256.Size]byte {
	m := hmac.New(sha256.New, h.key[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var out [sha256.Size]byte
	copy(out[:], m.Sum(nil))
	return out
}

// current re-reads the file if it changed and returns the users in force
// with their verified-password cache.
func (h *Htpasswd) current() (map[string][]byte, map[string][sha256.Size]byte) {
	fi, err := os.Stat(h.path)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.reloadFailed(fileStamp{}, err)
		return h.users, h.verified
	}
	st := stampOf(fi)
	if st.equal(h.stamp) {
		return h.users, h.verified
	}
	users, err := readHtpasswd(h.path)
	if err != nil {
		h.reloadFailed(st, err)
		return h.users, h.verified
	}
	h.stamp, h.users, h.verified = st, users, map[string][sha256.Size]byte{}
	h.log.Info("htpasswd file reloaded", slog.String("path", h.path), slog.Int("users", len(users)))
	return h.users, h.verified
}

func (h *Htpasswd) reloadFailed(st fileStamp, err error) {
	if st.equal(h.failed) && st != (fileStamp{}) {
		return
	}
	h.failed = st
	h.log.Error("htpasswd file unusable; the previous users stay in force", slog.String("path", h.path), slog.Any("err", err))
}

func readHtpasswd(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read htpasswd file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxHtpasswdSize+1))
	if err != nil {
		return nil, fmt.Errorf("read htpasswd file %s: %w", path, err)
	}
	if len(data) > maxHtpasswdSize {
		return nil, fmt.Errorf("read htpasswd file %s: larger than %d bytes", path, maxHtpasswdSize)
	}
	users, err := parseHtpasswd(data)
	if err != nil {
		return nil, fmt.Errorf("htpasswd file %s: %w", path, err)
	}
	return users, nil
}

// parseHtpasswd reads "name:hash" lines; blank lines and # comments are
// skipped. Only bcrypt hashes are accepted: the other htpasswd formats
// (MD5-crypt, SHA-1, crypt) are fast enough to brute-force.
func parseHtpasswd(data []byte) (map[string][]byte, error) {
	users := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), maxHtpasswdSize)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want NAME:HASH", n)
		}
		if err := validUserName(name); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("line %d: user %q: not a bcrypt hash (%v); make it with `imgtool registry user add` or `htpasswd -B`", n, name, err)
		}
		if _, dup := users[name]; dup {
			return nil, fmt.Errorf("line %d: user %q listed twice", n, name)
		}
		users[name] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return users, nil
}

// validUserName accepts what Basic authentication can carry unambiguously.
func validUserName(name string) error {
	switch {
	case name == "":
		return errors.New("empty user name")
	case len(name) > 256:
		return fmt.Errorf("user name longer than 256 bytes")
	case strings.ContainsAny(name, ":#\n\r\t ") || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("user name %q contains a colon, '#', white space or a control character", name)
	}
	return nil
}
