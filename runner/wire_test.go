package runner

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"
)

func fullConfig() config {
	return config{
		Dir: "/var/lib/imgtool/cache/unpack/chains/abc", Rootfs: Writable, ReadOnly: true,
		Lower: []string{"/l/2", "/l/1"}, Upper: "/u", Work: "/w",
		Args: []string{"sh", "-c", "echo 'a b' \"$X\"", ""}, Env: []string{"PATH=/bin", "X=ünïcødé\x00nul", "EMPTY="},
		Cwd: "/work dir", User: "app:extra", Hostname: "h", Network: NetworkNone,
		Mounts: []Mount{{Source: "/host/conf", Target: "/conf", ReadOnly: true}, {Target: "/scratch", Tmpfs: true}},
		Hosts:  []string{"10.0.0.1\tdb"}, TTY: true, Winsize: &winsize{Rows: 50, Cols: 65535},
		State: "/root/mnt", SetGroups: true, Reexec: true, UnmappedUserAsRoot: true,
	}
}

// framed is b as sent on a pipe.
func framed(t testing.TB, b wireBuf) []byte {
	var pipe bytes.Buffer
	if err := b.send(&pipe); err != nil {
		t.Fatal(err)
	}
	return pipe.Bytes()
}

func decodeConfig(b []byte) (config, error) {
	var c config
	m, err := receive(bytes.NewReader(b), 1<<20)
	if err != nil {
		return c, err
	}
	return c, c.decode(m)
}

func TestWireConfigRoundTrip(t *testing.T) {
	for name, c := range map[string]config{
		"zero": {},
		"full": fullConfig(),
		"args": {Args: []string{"/bin/true"}, Env: []string{"PATH=/usr/bin"}, Network: NetworkHost, State: "/s"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := decodeConfig(framed(t, c.encode()))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Errorf("decoded %+v\nwant    %+v", got, c)
			}
		})
	}
}

// TestWireStatusSequence: the init sends "ok" and, later, "exit" on one
// pipe; each read takes exactly one message.
func TestWireStatusSequence(t *testing.T) {
	want := []status{{Kind: "ok"}, {Kind: "exit", Code: 137}, {Kind: "exec", Code: -1, Msg: `exec "x": not found`}}
	var pipe bytes.Buffer
	for _, st := range want {
		if err := st.encode().send(&pipe); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range want {
		got, err := readStatus(&pipe)
		if err != nil || got != w {
			t.Errorf("readStatus = %+v, %v; want %+v", got, err, w)
		}
	}
	if _, err := readStatus(&pipe); !errors.Is(err, io.EOF) {
		t.Errorf("after the last message: %v, want EOF", err)
	}
}

// TestWireRejects: a message cut short, of another version, too long, or
// with counts and flags no encoder writes is an error, never a panic or
// an allocation sized by the input.
func TestWireRejects(t *testing.T) {
	good := framed(t, fullConfig().encode())
	for n := range len(good) {
		if _, err := decodeConfig(good[:n]); err == nil {
			t.Errorf("a message cut to %d of %d bytes was accepted", n, len(good))
		}
	}
	frame := func(body ...byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	for name, b := range map[string][]byte{
		"empty body":    frame(),
		"other version": frame(wireVersion + 1),
		"too long":      binary.BigEndian.AppendUint32(nil, 1<<30),
		"trailing":      frame(append(config{}.encodeBody(), 0)...),
		"huge count":    frame(wireVersion, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"bad flag":      frame(wireVersion, 0, 0, 2),
		"huge string":   frame(wireVersion, 0xff, 0xff, 0xff, 0xff, 0x0f, 'a'),
	} {
		if _, err := decodeConfig(b); !errors.Is(err, errWire) {
			t.Errorf("%s: %v, want errWire", name, err)
		}
	}
}

// encodeBody is c's message without its length: the version and fields.
func (c config) encodeBody() []byte { return c.encode()[4:] }

func FuzzWireConfig(f *testing.F) {
	f.Add(framed(f, fullConfig().encode()))
	f.Add(framed(f, config{}.encode()))
	f.Add(framed(f, status{Kind: "ok"}.encode()))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeConfig(b)
		if err != nil {
			return
		}
		again, err := decodeConfig(framed(t, c.encode()))
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("re-encoding %+v gave %+v, %v", c, again, err)
		}
	})
}
