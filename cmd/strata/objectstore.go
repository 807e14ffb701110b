package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/fs"
	"github.com/strata-io/strata/tier/objstore/s3"
)

// objectStoreFlags are the flags that name the object store, shared by
// serve and the tier inspection commands.
type objectStoreFlags struct {
	kind      string
	dir       string
	bucket    string
	endpoint  string
	region    string
	pathStyle bool
	accessKey string
	secretKey string
}

func (o *objectStoreFlags) register(f *pflag.FlagSet, kindHelp string) {
	f.StringVar(&o.kind, "object-store", "fs", kindHelp)
	f.StringVar(&o.dir, "object-store-dir", "", "directory of the fs object store (default <data-dir>/objects)")
	f.StringVar(&o.bucket, "s3-bucket", "", "S3 bucket (must exist)")
	f.StringVar(&o.endpoint, "s3-endpoint", "", "S3 endpoint URL for S3-compatible servers (default AWS)")
	f.StringVar(&o.region, "s3-region", "", "S3 region (default from the AWS chain, else us-east-1)")
	f.BoolVar(&o.pathStyle, "s3-path-style", false, "address buckets as <endpoint>/<bucket> (most S3-compatible servers)")
	f.StringVar(&o.accessKey, "s3-access-key", "", "static S3 access key (default: the standard AWS credentials chain)")
	f.StringVar(&o.secretKey, "s3-secret-key", "", "static S3 secret key")
}

// errNoObjectStore is returned by open for --object-store none.
var errNoObjectStore = errors.New("--object-store none: tiering is off")

// open opens the store. With mustExist, an fs store's directory must
// already exist (inspection must not create an empty bucket).
func (o *objectStoreFlags) open(ctx context.Context, dataDir string, mustExist bool) (objstore.Store, error) {
	switch o.kind {
	case "none", "":
		return nil, errNoObjectStore
	case "fs":
		dir := o.dir
		if dir == "" {
			if dataDir == "" {
				return nil, errors.New("the fs object store needs --object-store-dir or --data-dir")
			}
			dir = filepath.Join(dataDir, "objects")
		}
		if mustExist {
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				return nil, fmt.Errorf("fs object store %s: not a directory (%v)", dir, err)
			}
		}
		st, err := fs.New(dir)
		if err != nil {
			return nil, fmt.Errorf("object store: %w", err)
		}
		return st, nil
	case "s3":
		st, err := s3.New(ctx, s3.Options{
			Bucket: o.bucket, Endpoint: o.endpoint, Region: o.region, PathStyle: o.pathStyle,
			AccessKeyID: o.accessKey, SecretAccessKey: o.secretKey,
			// Segment objects are uploaded from files, which the backend
			// sends without buffering: a segment of up to 2 GiB is one PUT,
			// larger ones go in 512 MiB parts (few requests per GB).
			MultipartThreshold: 2 << 30,
			PartSize:           512 << 20,
		})
		if err != nil {
			return nil, fmt.Errorf("object store: %w", err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("--object-store must be fs, s3 or none, got %q", o.kind)
}
