package runner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// The config and the status reports cross a pipe between imgtool and its
// own init, which come from one build. They are encoded by hand, as a few
// length-prefixed fields, rather than as JSON: encoding/json builds its
// reflection tables on first use, about a quarter of a millisecond of the
// init's start, which a warm `imgtool run` (some 10 ms) waits for.
//
// A message is a 4-byte big-endian length, then that many bytes: a
// version byte, then the fields in a fixed order. Strings are a uvarint
// length and the bytes; lists a uvarint count and the items; booleans a
// byte; integers a varint.

// wireVersion changes whenever a message's fields do.
const wireVersion = 2

// errWire reports a message that is not one this build writes.
var errWire = errors.New("malformed message from imgtool")

// wireBuf is a message being encoded.
type wireBuf []byte

func newWireBuf() wireBuf { return wireBuf{0, 0, 0, 0, wireVersion} }

func (b *wireBuf) str(s string) {
	*b = binary.AppendUvarint(*b, uint64(len(s)))
	*b = append(*b, s...)
}

func (b *wireBuf) strs(ss []string) {
	*b = binary.AppendUvarint(*b, uint64(len(ss)))
	for _, s := range ss {
		b.str(s)
	}
}

func (b *wireBuf) flag(v bool) {
	if v {
		*b = append(*b, 1)
	} else {
		*b = append(*b, 0)
	}
}

func (b *wireBuf) int(v int) { *b = binary.AppendVarint(*b, int64(v)) }

// send writes the message, its length first, in one write.
func (b wireBuf) send(w io.Writer) error {
	if len(b)-4 > math.MaxUint32 {
		return errors.New("message too large")
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	_, err := w.Write(b)
	return err
}

// wireReader decodes a message; the first error sticks, and every read
// after it returns zero values.
type wireReader struct {
	b   []byte
	err error
}

// receive reads one message of at most max bytes. A pipe closed before
// it starts is io.EOF.
func receive(r io.Reader, max int) (*wireReader, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if uint64(size) > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, at most %d expected", errWire, size, max)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: %w", errWire, noEOF(err))
	}
	if len(b) == 0 || b[0] != wireVersion {
		return nil, fmt.Errorf("%w: not version %d", errWire, wireVersion)
	}
	return &wireReader{b: b[1:]}, nil
}

// noEOF turns a message cut short into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (r *wireReader) fail() {
	if r.err == nil {
		r.err = errWire
	}
	r.b = nil
}

func (r *wireReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) str() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *wireReader) strs() []string {
	n := r.uvarint()
	// Each string takes at least its length byte: a count past what is
	// left is a lie, and must not size an allocation.
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.str()
	}
	return out
}

func (r *wireReader) flag() bool {
	if len(r.b) == 0 || r.b[0] > 1 {
		r.fail()
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

func (r *wireReader) int() int {
	v, n := binary.Varint(r.b)
	if n <= 0 || v < math.MinInt32 || v > math.MaxInt32 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return int(v)
}

// done reports the first error, or trailing bytes.
func (r *wireReader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d bytes left over", errWire, len(r.b))
	}
	return r.err
}

// encode returns c as a message.
func (c config) encode() wireBuf {
	b := newWireBuf()
	b.str(c.Dir)
	b.int(int(c.Rootfs))
	b.strs(c.Lower)
	b.str(c.Upper)
	b.str(c.Work)
	b.flag(c.ReadOnly)
	b.strs(c.Args)
	b.strs(c.Env)
	b.str(c.Cwd)
	b.str(c.User)
	b.str(c.Hostname)
	b.str(string(c.Network))
	b = binary.AppendUvarint(b, uint64(len(c.Mounts)))
	for _, m := range c.Mounts {
		b.str(m.Source)
		b.str(m.Target)
		b.flag(m.ReadOnly)
		b.flag(m.Tmpfs)
	}
	b.strs(c.Hosts)
	b.flag(c.TTY)
	b.flag(c.Winsize != nil)
	if c.Winsize != nil {
		b = binary.AppendUvarint(b, uint64(c.Winsize.Rows))
		b = binary.AppendUvarint(b, uint64(c.Winsize.Cols))
	}
	b.str(c.State)
	b.flag(c.SetGroups)
	b.flag(c.Reexec)
	b.flag(c.UnmappedUserAsRoot)
	return b
}

// decode fills c from r.
func (c *config) decode(r *wireReader) error {
	c.Dir = r.str()
	c.Rootfs = Rootfs(r.int())
	c.Lower = r.strs()
	c.Upper = r.str()
	c.Work = r.str()
	c.ReadOnly = r.flag()
	c.Args = r.strs()
	c.Env = r.strs()
	c.Cwd = r.str()
	c.User = r.str()
	c.Hostname = r.str()
	c.Network = Network(r.str())
	// A mount takes at least four bytes.
	if n := r.uvarint(); n > uint64(len(r.b)/4) {
		r.fail()
	} else if n > 0 {
		c.Mounts = make([]Mount, n)
		for i := range c.Mounts {
			m := &c.Mounts[i]
			m.Source, m.Target = r.str(), r.str()
			m.ReadOnly, m.Tmpfs = r.flag(), r.flag()
		}
	}
	c.Hosts = r.strs()
	c.TTY = r.flag()
	if r.flag() {
		rows, cols := r.uvarint(), r.uvarint()
		if rows > math.MaxUint16 || cols > math.MaxUint16 {
			r.fail()
		}
		c.Winsize = &winsize{Rows: uint16(rows), Cols: uint16(cols)}
	}
	c.State = r.str()
	c.SetGroups = r.flag()
	c.Reexec = r.flag()
	c.UnmappedUserAsRoot = r.flag()
	return r.done()
}

func (s status) encode() wireBuf {
	b := newWireBuf()
	b.str(s.Kind)
	b.str(s.Msg)
	b.int(s.Code)
	return b
}

func (s *status) decode(r *wireReader) error {
	s.Kind, s.Msg, s.Code = r.str(), r.str(), r.int()
	return r.done()
}
