package build

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// xzMagic starts every xz stream.
var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0}

// maxXZDict bounds the LZMA2 dictionary an xz archive may ask for, as
// maxZstdWindow does for zstd: xz -9 uses 64 MiB, and the decoder
// allocates whatever a block header says, up to 4 GiB, before reading a
// byte of data.
const maxXZDict = 128 << 20

// maxXZIndex bounds the index of one xz stream (a record is a few bytes a
// block; 16 MiB is millions of blocks).
const maxXZIndex = 16 << 20

// openXZ checks every block of the xz file f (size bytes) against
// maxXZDict, then decompresses it. ulikunitz/xz, the Go xz library, has
// no such bound, hence the walk by hand: from the end, each stream's
// footer gives its index, the index the size of every block, and each
// block's header its LZMA2 dictionary size (xz-file-format-1.2.0).
func openXZ(f io.ReaderAt, size int64) (io.Reader, error) {
	if err := checkXZ(f, size, maxXZDict); err != nil {
		return nil, fmt.Errorf("read xz: %w", err)
	}
	r, err := xz.NewReader(io.NewSectionReader(f, 0, size))
	if err != nil {
		return nil, fmt.Errorf("read xz: %w", err)
	}
	return r, nil
}

// Errors of checkXZ. ADD reports them rather than copying the file
// as it is, which it does with a file that is not an archive.
var (
	errXZCorrupt = errors.New("corrupt or truncated xz file")
	errXZDict    = errors.New("xz dictionary too large")
)

// checkXZ walks the streams of an xz file from its end and fails if one
// is malformed or a block needs a dictionary larger than maxDict.
func checkXZ(f io.ReaderAt, size, maxDict int64) error {
	pos := size
	for pos > 0 {
		var word [4]byte
		if _, err := f.ReadAt(word[:], pos-4); err != nil {
			return errXZCorrupt
		}
		if word == [4]byte{} { // stream padding
			pos -= 4
			continue
		}
		start, err := checkXZStream(f, pos, maxDict)
		if err != nil {
			return err
		}
		pos = start
	}
	return nil
}

// checkXZStream checks the stream that ends at end and returns where it
// starts.
func checkXZStream(f io.ReaderAt, end, maxDict int64) (int64, error) {
	if end < 24 {
		return 0, errXZCorrupt
	}
	var footer [12]byte
	if _, err := f.ReadAt(footer[:], end-12); err != nil || !bytes.Equal(footer[10:], []byte("YZ")) {
		return 0, errXZCorrupt
	}
	indexSize := (int64(binary.LittleEndian.Uint32(footer[4:8])) + 1) * 4
	if indexSize > maxXZIndex || indexSize > end-24 {
		return 0, errXZCorrupt
	}
	index := make([]byte, indexSize)
	if _, err := f.ReadAt(index, end-12-indexSize); err != nil {
		return 0, errXZCorrupt
	}
	blocks, err := xzBlockSizes(index)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, b := range blocks {
		total += b
	}
	start := end - 12 - indexSize - total - 12
	if start < 0 {
		return 0, errXZCorrupt
	}
	magic := make([]byte, len(xzMagic))
	if _, err := f.ReadAt(magic, start); err != nil || !bytes.Equal(magic, xzMagic) {
		return 0, errXZCorrupt
	}
	off := start + 12
	for _, b := range blocks {
		if err := checkXZBlock(f, off, maxDict); err != nil {
			return 0, err
		}
		off += b
	}
	return start, nil
}

// xzBlockSizes reads an index: the size of each block, padding included.
// Each record takes at least two bytes, which bounds the loop.
func xzBlockSizes(index []byte) ([]int64, error) {
	if index[0] != 0 {
		return nil, errXZCorrupt
	}
	r := bytes.NewReader(index[1:])
	n, err := binary.ReadUvarint(r)
	if err != nil || n > uint64(len(index)/2) {
		return nil, errXZCorrupt
	}
	sizes := make([]int64, 0, n)
	for range n {
		unpadded, err := binary.ReadUvarint(r)
		if err != nil || unpadded < 5 || unpadded > 1<<62 {
			return nil, errXZCorrupt
		}
		if _, err := binary.ReadUvarint(r); err != nil { // uncompressed size
			return nil, errXZCorrupt
		}
		sizes = append(sizes, int64(unpadded+3)&^3)
	}
	return sizes, nil
}

// checkXZBlock reads the block header at off and checks the dictionary
// of its LZMA2 filter.
func checkXZBlock(f io.ReaderAt, off, maxDict int64) error {
	var first [1]byte
	if _, err := f.ReadAt(first[:], off); err != nil || first[0] == 0 {
		return errXZCorrupt
	}
	hdr := make([]byte, (int(first[0])+1)*4)
	if _, err := f.ReadAt(hdr, off); err != nil {
		return errXZCorrupt
	}
	flags := hdr[1]
	r := bytes.NewReader(hdr[2 : len(hdr)-4])
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} { // compressed, uncompressed size
		if present {
			if _, err := binary.ReadUvarint(r); err != nil {
				return errXZCorrupt
			}
		}
	}
	for range int(flags&3) + 1 {
		id, err := binary.ReadUvarint(r)
		if err != nil {
			return errXZCorrupt
		}
		n, err := binary.ReadUvarint(r)
		if err != nil || n > uint64(r.Len()) {
			return errXZCorrupt
		}
		props := make([]byte, n)
		if _, err := io.ReadFull(r, props); err != nil {
			return errXZCorrupt
		}
		if id != 0x21 { // not LZMA2: the decoder refuses it itself
			continue
		}
		if len(props) != 1 {
			return errXZCorrupt
		}
		dict, err := lzma.DecodeDictCap(props[0])
		if err != nil {
			return errXZCorrupt
		}
		if dict > maxDict {
			return fmt.Errorf("%w: a block needs %d MiB, more than the %d MiB allowed", errXZDict, dict>>20, maxDict>>20)
		}
	}
	return nil
}
