// Package rootlesscontainers encodes the user.rootlesscontainers xattr
// (rootlesscontainers.io), in which an unprivileged unpacker records the
// owner a file should have had, so that a layer written from the tree
// carries the original owners. umoci and the rootless runtimes use it.
//
// The value is the protobuf message `Resource { uint32 uid = 1; uint32
// gid = 2; }`; two varint fields are encoded by hand rather than pulling
// in a protobuf runtime for them.
package rootlesscontainers

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Xattr is the extended attribute holding the encoded Resource.
const Xattr = "user.rootlesscontainers"

// NoopID means "leave this id as it is on disk".
const NoopID = ^uint32(0)

// Resource is the recorded owner.
type Resource struct{ UID, GID uint32 }

// Encode returns the xattr value for r. Fields equal to zero are omitted,
// as protobuf does.
func Encode(r Resource) []byte {
	var out []byte
	if r.UID != 0 {
		out = binary.AppendUvarint(append(out, 0x08), uint64(r.UID))
	}
	if r.GID != 0 {
		out = binary.AppendUvarint(append(out, 0x10), uint64(r.GID))
	}
	return out
}

// Decode parses an xattr value, skipping unknown varint fields.
func Decode(b []byte) (Resource, error) {
	var r Resource
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return Resource{}, errors.New("decode rootlesscontainers xattr: bad field key")
		}
		b = b[n:]
		if key&7 != 0 { // only varint fields are defined
			return Resource{}, fmt.Errorf("decode rootlesscontainers xattr: unexpected wire type %d", key&7)
		}
		v, n := binary.Uvarint(b)
		if n <= 0 || v > uint64(^uint32(0)) {
			return Resource{}, errors.New("decode rootlesscontainers xattr: bad varint")
		}
		b = b[n:]
		switch key >> 3 {
		case 1:
			r.UID = uint32(v)
		case 2:
			r.GID = uint32(v)
		}
	}
	return r, nil
}
