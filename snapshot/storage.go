package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Storage holds a snapshot's objects. Names are slash-separated and relative to the snapshot's
// location. An object becomes visible only when its writer commits, whole: a reader never sees a
// half-written file, and a snapshot whose manifest (written last) is not there is not a snapshot.
type Storage interface {
	// Create starts writing an object; nothing is visible until Commit returns nil.
	Create(ctx context.Context, name string) (ObjectWriter, error)
	// Open reads an object; a missing object is an error wrapping ErrNotExist.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// Describe names an object for messages (a path or URL).
	Describe(name string) string
}

// ObjectWriter writes one object.
type ObjectWriter interface {
	io.Writer
	// Commit makes the object visible, whole.
	Commit() error
	// Abort discards it.
	Abort()
}

// ErrNotExist is wrapped by Storage.Open for a missing object.
var ErrNotExist = errors.New("object does not exist")

// OpenStorage opens a location: a local directory, or s3://bucket/prefix (endpoint and
// credentials from S3Options).
func OpenStorage(location string, s3opts S3Options) (Storage, error) {
	if strings.HasPrefix(location, "s3://") {
		u, err := url.Parse(location)
		if err != nil {
			return nil, fmt.Errorf("storage %s: %w", location, err)
		}
		return NewS3(s3opts, u.Host, strings.Trim(u.Path, "/"))
	}
	return &Dir{Path: location}, nil
}

// Dir is a local directory. Objects are written to a temporary file, synced and renamed into place.
type Dir struct{ Path string }

func (d *Dir) file(name string) string { return filepath.Join(d.Path, filepath.FromSlash(name)) }

// Describe implements Storage.
func (d *Dir) Describe(name string) string { return d.file(name) }

// Create implements Storage.
func (d *Dir) Create(_ context.Context, name string) (ObjectWriter, error) {
	p := d.file(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	return &dirWriter{f: f, dest: p}, nil
}

// Open implements Storage.
func (d *Dir) Open(_ context.Context, name string) (io.ReadCloser, error) {
	f, err := os.Open(d.file(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", d.file(name), ErrNotExist)
	}
	return f, err
}

type dirWriter struct {
	f    *os.File
	dest string
}

func (w *dirWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

func (w *dirWriter) Commit() error {
	if err := w.f.Sync(); err != nil {
		w.Abort()
		return fmt.Errorf("write %s: %w", w.dest, err)
	}
	if err := w.f.Close(); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("write %s: %w", w.dest, err)
	}
	if err := os.Rename(w.f.Name(), w.dest); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("write %s: %w", w.dest, err)
	}
	// The rename is durable once the directory is synced.
	if dir, err := os.Open(filepath.Dir(w.dest)); err == nil {
		dir.Sync()
		dir.Close()
	}
	return nil
}

func (w *dirWriter) Abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// S3Options says how to reach an S3-compatible server.
type S3Options struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string // never logged
	Secure    bool   // HTTPS
	Region    string
}

// S3 is a bucket (and key prefix) on an S3-compatible server. An object is uploaded in one
// streaming PUT (multipart above the part size): S3 makes it visible only when the upload
// completes, so an interrupted upload leaves nothing.
type S3 struct {
	Client *minio.Client
	Bucket string
	Prefix string
	label  string
}

// NewS3 connects to bucket on the server of opts, with objects under prefix.
func NewS3(opts S3Options, bucket, prefix string) (*S3, error) {
	c, err := minio.New(opts.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, ""),
		Secure: opts.Secure,
		Region: opts.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", opts.Endpoint, err)
	}
	return &S3{Client: c, Bucket: bucket, Prefix: prefix, label: "s3://" + bucket}, nil
}

func (s *S3) key(name string) string { return path.Join(s.Prefix, name) }

// Describe implements Storage.
func (s *S3) Describe(name string) string { return s.label + "/" + s.key(name) }

// Create implements Storage.
func (s *S3) Create(ctx context.Context, name string) (ObjectWriter, error) {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	w := &s3Writer{pw: pw, done: make(chan error, 1), cancel: cancel, name: s.Describe(name)}
	go func() {
		_, err := s.Client.PutObject(ctx, s.Bucket, s.key(name), pr, -1, minio.PutObjectOptions{
			ContentType: "application/octet-stream", PartSize: 16 << 20,
			// Each part carries its MD5; the payload is not signed chunk by chunk (the aws-chunked
			// encoding, which not every S3-compatible server decodes): each file's SHA-256 is in
			// the manifest and checked before and during a restore.
			SendContentMd5: true, DisableContentSha256: true})
		pr.CloseWithError(err)
		w.done <- err
	}()
	return w, nil
}

// Open implements Storage.
func (s *S3) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	o, err := s.Client.GetObject(ctx, s.Bucket, s.key(name), minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", s.Describe(name), err)
	}
	// GetObject is lazy: ask now so a missing object is reported as such.
	if _, err := o.Stat(); err != nil {
		o.Close()
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil, fmt.Errorf("%s: %w", s.Describe(name), ErrNotExist)
		}
		return nil, fmt.Errorf("open %s: %w", s.Describe(name), err)
	}
	return o, nil
}

type s3Writer struct {
	pw     *io.PipeWriter
	done   chan error
	cancel context.CancelFunc
	name   string
}

func (w *s3Writer) Write(p []byte) (int, error) { return w.pw.Write(p) }

func (w *s3Writer) Commit() error {
	w.pw.Close()
	err := <-w.done
	w.cancel()
	if err != nil {
		return fmt.Errorf("upload %s: %w", w.name, err)
	}
	return nil
}

func (w *s3Writer) Abort() {
	w.cancel()
	w.pw.CloseWithError(errors.New("snapshot: upload aborted"))
	<-w.done
}

// Sub is the part of st under prefix (a shard of a split snapshot).
func Sub(st Storage, prefix string) Storage { return &subStorage{st, prefix} }

type subStorage struct {
	st     Storage
	prefix string
}

func (s *subStorage) Create(ctx context.Context, name string) (ObjectWriter, error) {
	return s.st.Create(ctx, path.Join(s.prefix, name))
}

func (s *subStorage) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	return s.st.Open(ctx, path.Join(s.prefix, name))
}

func (s *subStorage) Describe(name string) string { return s.st.Describe(path.Join(s.prefix, name)) }
