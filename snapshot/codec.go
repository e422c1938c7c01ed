package snapshot

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Compression names how data files are compressed.
const (
	CompressZstd = "zstd"
	CompressGzip = "gzip"
	CompressNone = "none"
)

type compressor interface {
	io.Writer
	Close() error
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func newCompressor(w io.Writer, method string, level int) (compressor, error) {
	switch method {
	case CompressZstd, "":
		lvl := zstd.SpeedFastest
		if level > 0 {
			lvl = zstd.EncoderLevelFromZstd(level)
		}
		// One encoder per reading connection (the connections are the parallelism). No frame
		// checksum: the manifest's SHA-256 of the file already proves it whole. A 1 MiB window
		// compresses these rows as well as the default 8 MiB (rows repeat within a few KiB) with
		// less memory per encoder and slightly less CPU.
		return zstd.NewWriter(w, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(false), zstd.WithWindowSize(1<<20))
	case CompressGzip:
		lvl := gzip.BestSpeed
		if level > 0 {
			lvl = level
		}
		return gzip.NewWriterLevel(w, lvl)
	case CompressNone:
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("compression %q: want %s, %s or %s", method, CompressZstd, CompressGzip, CompressNone)
}

// decompress reads a data file whatever its compression, told by its first bytes (zstd, gzip, or
// plain text).
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	}
	return io.NopCloser(br), nil
}

// verifyingReader passes a stored file through, hashing it, and turns its end into an error naming
// the file unless the size and SHA-256 are those of the manifest: a corrupted or truncated file is
// never taken for a good one, even when it is read only once, while it is being loaded.
type verifyingReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	file *FileManifest
	desc string
}

func newVerifyingReader(r io.Reader, f *FileManifest, desc string) *verifyingReader {
	return &verifyingReader{r: r, h: sha256.New(), file: f, desc: desc}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.n += int64(n)
	v.h.Write(p[:n])
	if v.n > v.file.Size {
		return n, fmt.Errorf("%s: %w: longer than the manifest's %d bytes", v.desc, ErrCorrupt, v.file.Size)
	}
	if errors.Is(err, io.EOF) {
		if v.n != v.file.Size {
			return n, fmt.Errorf("%s: %w: %d bytes, the manifest says %d (truncated)", v.desc, ErrCorrupt, v.n, v.file.Size)
		}
		if sum := hex.EncodeToString(v.h.Sum(nil)); sum != v.file.SHA256 {
			return n, fmt.Errorf("%s: %w: SHA-256 %s, the manifest says %s", v.desc, ErrCorrupt, sum, v.file.SHA256)
		}
	}
	return n, err
}

// ErrCorrupt is wrapped by errors about a file that is not the one the manifest describes.
var ErrCorrupt = errors.New("file does not match the manifest")
