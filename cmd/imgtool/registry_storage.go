//go:build !imgtool_lean

package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	s3 "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	"github.com/imgtool/imgtool/internal/writebehind"
	"github.com/spf13/pflag"
)

// storageOptions say where `imgtool registry serve` keeps its data: a
// directory under the store root (the default), or an S3 bucket that
// several replicas may share. S3 credentials are never options: they come
// from the AWS SDK's usual chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN; the shared credentials file and AWS_PROFILE; an
// EC2/ECS role), so they stay out of command lines, process listings and
// logs.
type storageOptions struct {
	Driver     string    `yaml:"driver"` // "filesystem" or "s3"
	MaxThreads uint64    `yaml:"maxThreads"`
	S3         s3Options `yaml:"s3"`
}

type s3Options struct {
	Endpoint      string `yaml:"endpoint"`
	Region        string `yaml:"region"`
	Bucket        string `yaml:"bucket"`
	RootDirectory string `yaml:"rootDirectory"`
	PathStyle     bool   `yaml:"pathStyle"`
	Insecure      bool   `yaml:"insecure"`
	SkipVerify    bool   `yaml:"skipVerify"`
	ChunkSize     int    `yaml:"chunkSize"`
}

// s3MinChunkSize is S3's smallest multipart part but the last.
const s3MinChunkSize = 5 << 20

func addStorageFlags(f *pflag.FlagSet, o *storageOptions) {
	f.StringVar(&o.Driver, "storage", "filesystem", `where the data lives: "filesystem" (<root>/registry) or "s3"`)
	f.Uint64Var(&o.MaxThreads, "max-threads", 100, "bound on concurrent filesystem operations")
	f.StringVar(&o.S3.Endpoint, "s3-endpoint", "", "S3 endpoint URL for S3-compatible services, e.g. http://127.0.0.1:7480 (default: AWS)")
	f.StringVar(&o.S3.Region, "s3-region", "", "S3 region (default: $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1)")
	f.StringVar(&o.S3.Bucket, "s3-bucket", "", "S3 bucket holding the registry (required with --storage s3)")
	f.StringVar(&o.S3.RootDirectory, "s3-root-directory", "", "key prefix inside the bucket, to share a bucket between registries")
	f.BoolVar(&o.S3.PathStyle, "s3-path-style", false, "path-style addressing (endpoint/bucket/key), as Ceph RGW and MinIO need")
	f.BoolVar(&o.S3.Insecure, "s3-insecure", false, "plain HTTP to an --s3-endpoint given without a scheme (an http:// endpoint implies it)")
	f.BoolVar(&o.S3.SkipVerify, "s3-skip-verify", false, "do not verify the S3 endpoint's TLS certificate")
	f.IntVar(&o.S3.ChunkSize, "s3-chunk-size", 2*s3MinChunkSize, "bytes per S3 multipart part (at least 5 MiB)")
}

// rootDirRE keeps the key prefix to plain path components.
var rootDirRE = regexp.MustCompile(`^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$`)

// newStorageDriver opens the storage o names; root is the store root under
// which the filesystem driver keeps <root>/registry. It fails early, with
// what to fix, when a bucket cannot be reached.
func newStorageDriver(ctx context.Context, o storageOptions, root string) (storagedriver.StorageDriver, error) {
	switch o.Driver {
	case "filesystem", "":
		if err := o.S3.unused(); err != nil {
			return nil, err
		}
		return newFilesystemDriver(root, o.MaxThreads)
	case "s3":
		return newS3Driver(ctx, o.S3)
	}
	return nil, usageError{fmt.Errorf(`--storage %q: want "filesystem" or "s3"`, o.Driver)}
}

// openStorage is newStorageDriver for the commands that work on a
// registry's data without serving it (gc, import): the filesystem driver
// is opened without creating <root>/registry, which with mustExist must
// already be there, since the driver makes directories as it writes.
func openStorage(ctx context.Context, o storageOptions, root string, mustExist bool) (storagedriver.StorageDriver, string, error) {
	if o.Driver == "s3" {
		drv, err := newStorageDriver(ctx, o, root)
		return drv, "s3://" + path.Join(o.S3.Bucket, o.S3.RootDirectory), err
	}
	if o.Driver != "filesystem" && o.Driver != "" {
		return nil, "", usageError{fmt.Errorf(`--storage %q: want "filesystem" or "s3"`, o.Driver)}
	}
	if err := o.S3.unused(); err != nil {
		return nil, "", err
	}
	dir, err := filepath.Abs(filepath.Join(root, "registry"))
	if err != nil {
		return nil, "", err
	}
	if fi, err := os.Stat(dir); mustExist && (err != nil || !fi.IsDir()) {
		return nil, "", fmt.Errorf("no registry data at %s (set --root or IMGTOOL_ROOT to the root imgtool registry serve uses)", dir)
	}
	return writebehind.New(filesystem.DriverParameters{RootDirectory: dir, MaxThreads: o.MaxThreads}), dir, nil
}

func newFilesystemDriver(root string, maxThreads uint64) (storagedriver.StorageDriver, error) {
	dir := filepath.Join(root, "registry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry data directory: %w (set --root or IMGTOOL_ROOT to a writable directory)", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return writebehind.New(filesystem.DriverParameters{RootDirectory: abs, MaxThreads: maxThreads}), nil
}

// unused refuses S3 settings given without --storage s3, which would
// otherwise be silently ignored while data goes to the local disk.
func (o s3Options) unused() error {
	if o.Endpoint != "" || o.Bucket != "" || o.RootDirectory != "" || o.Region != "" || o.PathStyle || o.Insecure || o.SkipVerify {
		return usageError{fmt.Errorf("--s3-* flags need --storage s3")}
	}
	return nil
}

// params checks o and turns it into the s3-aws driver's parameters.
func (o s3Options) params() (s3.DriverParameters, error) {
	bad := func(format string, a ...any) (s3.DriverParameters, error) {
		return s3.DriverParameters{}, usageError{fmt.Errorf(format, a...)}
	}
	if o.Bucket == "" {
		return bad("--storage s3 needs --s3-bucket")
	}
	secure := !o.Insecure
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		switch {
		case err != nil:
			return bad("--s3-endpoint: %v", err)
		case u.User != nil:
			return bad("--s3-endpoint must not carry credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		case u.Scheme == "http":
			secure = false
		case u.Scheme == "https":
			if o.Insecure {
				return bad("--s3-insecure contradicts the https:// of --s3-endpoint %s", o.Endpoint)
			}
		case strings.Contains(o.Endpoint, "://"):
			return bad("--s3-endpoint %q: scheme must be http or https", o.Endpoint)
		}
	}
	root := strings.Trim(o.RootDirectory, "/")
	if root != "" && (!rootDirRE.MatchString(root) || strings.Contains("/"+root+"/", "/../") || strings.Contains("/"+root+"/", "/./")) {
		return bad("--s3-root-directory %q: want path components of letters, digits, '.', '_' and '-'", o.RootDirectory)
	}
	if root != "" {
		root = "/" + path.Clean(root)
	}
	if o.ChunkSize < s3MinChunkSize {
		return bad("--s3-chunk-size %d: S3 needs at least %d bytes", o.ChunkSize, s3MinChunkSize)
	}
	region := o.Region
	for _, env := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if region == "" {
			region = os.Getenv(env)
		}
	}
	if region == "" {
		region = "us-east-1"
	}
	return s3.DriverParameters{
		Bucket:         o.Bucket,
		Region:         region,
		RegionEndpoint: o.Endpoint,
		ForcePathStyle: o.PathStyle,
		Secure:         secure,
		SkipVerify:     o.SkipVerify,
		V4Auth:         true,
		ChunkSize:      o.ChunkSize,
		// The driver's defaults, which its New does not fill in.
		MultipartCopyChunkSize:      32 << 20,
		MultipartCopyMaxConcurrency: 100,
		MultipartCopyThresholdSize:  32 << 20,
		RootDirectory:               root,
		StorageClass:                "STANDARD",
		ObjectACL:                   "private",
		UserAgent:                   "imgtool/" + version,
	}, nil
}

// s3ProbeTimeout bounds the start-up check of the bucket, which the SDK
// otherwise retries for long when an endpoint or credentials are wrong.
const s3ProbeTimeout = 30 * time.Second

func newS3Driver(ctx context.Context, o s3Options) (storagedriver.StorageDriver, error) {
	p, err := o.params()
	if err != nil {
		return nil, err
	}
	drv, err := s3.New(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("open S3 bucket %s: %w", p.Bucket, err)
	}
	probe, cancel := context.WithTimeout(ctx, s3ProbeTimeout)
	defer cancel()
	// Listing the registry's root needs the bucket, the endpoint and the
	// credentials to be right; an empty bucket lists as nothing.
	if _, err := drv.List(probe, "/"); err != nil {
		where := "AWS"
		if o.Endpoint != "" {
			where = o.Endpoint
		}
		return nil, fmt.Errorf("S3 bucket %s at %s: %w (check the bucket, --s3-endpoint, --s3-path-style and the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY environment)", p.Bucket, where, oneLine{err})
	}
	return drv, nil
}

// oneLine keeps the AWS SDK's multi-line errors ("...\ncaused by: ...") on
// the one line imgtool's errors take.
type oneLine struct{ error }

func (o oneLine) Error() string {
	return strings.Join(strings.Fields(strings.ReplaceAll(o.error.Error(), "\n", "; ")), " ")
}

func (o oneLine) Unwrap() error { return o.error }
