package rootlesscontainers

import "testing"

func TestRoundTrip(t *testing.T) {
	for _, r := range []Resource{{0, 0}, {1000, 1000}, {0, 42}, {NoopID, 5}, {65534, NoopID}} {
		got, err := Decode(Encode(r))
		if err != nil || got != r {
			t.Errorf("round trip of %+v: %+v, %v", r, got, err)
		}
	}
	// Bytes as umoci writes them for uid 1000, gid 1000.
	if got, err := Decode([]byte{0x08, 0xe8, 0x07, 0x10, 0xe8, 0x07}); err != nil || got != (Resource{1000, 1000}) {
		t.Errorf("decode umoci value: %+v, %v", got, err)
	}
	for _, bad := range [][]byte{{0x08}, {0x0a, 0x01}, {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}} {
		if _, err := Decode(bad); err == nil {
			t.Errorf("Decode(%x) accepted", bad)
		}
	}
}
