// Package s3 is the objstore.Store for Amazon S3 and S3-compatible servers
// (Versity S3 Gateway, MinIO, Ceph RGW, ...), built on aws-sdk-go-v2.
//
// It owns the translation between objstore semantics and S3 requests:
// single PUTs up to a threshold and multipart uploads above it (aborted on
// failure), If-None-Match: * for PutIfAbsent, ranged GETs whose length and
// Content-Range are checked, ListObjectsV2 paging, and the mapping of S3
// errors to objstore's. No SDK type appears in its API.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/internal/sized"
)

// Defaults for Options.
const (
	DefaultPartSize     = 16 << 20
	DefaultMaxAttempts  = 5
	DefaultMaxBackoff   = 5 * time.Second
	DefaultListPageSize = 1000
	DefaultRegion       = "us-east-1"
	// MinPartSize is S3's smallest allowed part (except the last).
	MinPartSize = 5 << 20
)

// Options configure a Store. Only Bucket is required.
type Options struct {
	// Bucket holds the objects. It must exist (see CreateBucket).
	Bucket string
	// Endpoint is the server's base URL, e.g. "http://127.0.0.1:7070", for
	// S3-compatible servers; empty means AWS.
	Endpoint string
	// Region; empty means the standard chain's (AWS_REGION, ~/.aws/config),
	// else DefaultRegion.
	Region string
	// PathStyle addresses the bucket as <endpoint>/<bucket>/<key> instead of
	// <bucket>.<endpoint>/<key>; most S3-compatible servers need it.
	PathStyle bool
	// AccessKeyID and SecretAccessKey (and optional SessionToken) are static
	// credentials; empty means the standard AWS chain (environment, shared
	// files, SSO, web identity, instance/container roles).
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// MaxAttempts is the number of tries per request, retrying throttling,
	// 5xx and network errors with jittered exponential back-off up to
	// MaxBackoff. Defaults DefaultMaxAttempts and DefaultMaxBackoff.
	MaxAttempts int
	MaxBackoff  time.Duration
	// PartSize is the multipart part size (>= MinPartSize); default
	// DefaultPartSize. Objects larger than MultipartThreshold (default
	// PartSize) are uploaded in parts, one part buffered in memory at a time.
	PartSize           int64
	MultipartThreshold int64
	// ListPageSize is the number of keys asked for per List request;
	// default DefaultListPageSize (S3's maximum).
	ListPageSize int32
	// HTTPClient overrides the SDK's HTTP client (e.g. for tests).
	HTTPClient *http.Client
}

func (o *Options) setDefaults() error {
	if o.Bucket == "" {
		return errors.New("s3 objstore: Options.Bucket is empty")
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.PartSize < MinPartSize {
		return fmt.Errorf("s3 objstore: PartSize %d is below S3's minimum %d", o.PartSize, MinPartSize)
	}
	if o.MultipartThreshold <= 0 {
		o.MultipartThreshold = o.PartSize
	}
	if o.ListPageSize <= 0 || o.ListPageSize > 1000 {
		o.ListPageSize = DefaultListPageSize
	}
	return nil
}

// Store is an objstore.Store on one S3 bucket. Safe for concurrent use.
type Store struct {
	opts   Options
	client *s3.Client
}

var (
	_ objstore.Store         = (*Store)(nil)
	_ objstore.UploadJanitor = (*Store)(nil)
)

// New returns a Store for opts. It makes no request; use
// objstore.ProbeConditionalCreate to check the server before relying on it.
func New(ctx context.Context, opts Options) (*Store, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	loadOpts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = opts.MaxAttempts
				o.MaxBackoff = opts.MaxBackoff
				// No client-side retry quota: under a long outage it turns
				// retryable errors into "retry quota exceeded" failures.
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if opts.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(opts.Region))
	}
	if opts.AccessKeyID != "" || opts.SecretAccessKey != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken)))
	}
	if opts.HTTPClient != nil {
		loadOpts = append(loadOpts, config.WithHTTPClient(opts.HTTPClient))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3 objstore: load AWS config: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.PathStyle
		// The SDK would log a DEBUG line to stderr for every GET whose
		// response carries no checksum (most S3-compatible servers).
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	return &Store{opts: opts, client: client}, nil
}

func (s *Store) String() string {
	if s.opts.Endpoint != "" {
		return "s3://" + s.opts.Bucket + " at " + s.opts.Endpoint
	}
	return "s3://" + s.opts.Bucket
}

// CreateBucket creates the Store's bucket, succeeding if it already exists
// and is ours. Meant for tests and first-time setup.
func (s *Store) CreateBucket(ctx context.Context) error {
	in := &s3.CreateBucketInput{Bucket: aws.String(s.opts.Bucket)}
	if r := s.client.Options().Region; r != "" && r != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(r)}
	}
	_, err := s.client.CreateBucket(ctx, in)
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("s3: create bucket %s: %w", s.opts.Bucket, err)
	}
	return nil
}

// errorCode returns the S3 error code and HTTP status of err, if it has them.
func errorCode(err error) (code string, status int) {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return code, status
}

// notFound wraps err with objstore.ErrNotFound if it says the key is
// missing. A missing bucket is not: it is a configuration error.
func notFound(err error) error {
	code, status := errorCode(err)
	if code == "NoSuchKey" || (status == http.StatusNotFound && code != "NoSuchBucket") {
		return fmt.Errorf("%w: %w", objstore.ErrNotFound, err)
	}
	return err
}

func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := s.put(ctx, key, r, size, false); err != nil {
		return fmt.Errorf("s3: put %s: %w", key, err)
	}
	return nil
}

func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := s.put(ctx, key, r, size, true); err != nil {
		return fmt.Errorf("s3: put-if-absent %s: %w", key, err)
	}
	return nil
}

// conditionFailed wraps err with objstore.ErrExists if it is S3's answer to
// a lost If-None-Match: * (412 PreconditionFailed, or 409
// ConditionalRequestConflict when a concurrent conditional write was in
// flight — reported as lost too, which can make both racers lose but never
// both win).
func conditionFailed(err error) error {
	code, status := errorCode(err)
	if code == "PreconditionFailed" || code == "ConditionalRequestConflict" || status == http.StatusPreconditionFailed {
		return fmt.Errorf("%w: %w", objstore.ErrExists, err)
	}
	return err
}

func (s *Store) put(ctx context.Context, key string, r io.Reader, size int64, ifAbsent bool) error {
	if err := objstore.ValidateKey(key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("negative size %d", size)
	}
	src, isSection, err := asSection(r, size)
	if err != nil {
		return err
	}
	if size > s.opts.MultipartThreshold {
		return s.putMultipart(ctx, key, r, src, isSection, size, ifAbsent)
	}
	// The SDK must be able to sign, checksum and resend the body: a file
	// (ReaderAt and Seeker) is sent from its own bytes, anything else is
	// buffered (at most MultipartThreshold bytes), so a failing reader
	// fails before any request is made.
	var body io.ReadSeeker
	if isSection {
		body = src.part(0, size)
	} else {
		buf, err := sized.ReadAll(ctx, r, size)
		if err != nil {
			return err
		}
		body = bytes.NewReader(buf)
	}
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.opts.Bucket),
		Key:           aws.String(key),
		Body:          body,
		ContentLength: aws.Int64(size),
	}
	if ifAbsent {
		in.IfNoneMatch = aws.String("*")
	}
	_, err = s.client.PutObject(ctx, in)
	if err != nil && ifAbsent {
		err = conditionFailed(err)
	}
	return err
}

// putMultipart uploads r in PartSize parts, one at a time, and aborts the
// upload if anything fails. With ifAbsent the condition is checked by
// CompleteMultipartUpload, so a loser has uploaded its parts for nothing
// but never replaces the winner's object.
func (s *Store) putMultipart(ctx context.Context, key string, r io.Reader, src sectionSource, isSection bool, size int64, ifAbsent bool) (err error) {
	created, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:            aws.String(s.opts.Bucket),
		Key:               aws.String(key),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return fmt.Errorf("create multipart upload: %w", err)
	}
	uploadID := created.UploadId
	defer func() {
		if err == nil {
			return
		}
		// Abort even if ctx is cancelled; an upload we fail to abort is
		// left for AbortIncompleteUploads (and bucket lifecycle rules).
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, aerr := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(s.opts.Bucket), Key: aws.String(key), UploadId: uploadID,
		}); aerr != nil {
			err = fmt.Errorf("%w (and abort of upload %s failed: %v)", err, aws.ToString(uploadID), aerr)
		}
	}()

	var buf []byte
	if !isSection {
		buf = make([]byte, min(s.opts.PartSize, size))
	}
	var parts []types.CompletedPart
	for off, num := int64(0), int32(1); off < size; num++ {
		n := min(s.opts.PartSize, size-off)
		var body io.ReadSeeker
		if isSection {
			body = src.part(off, n)
		} else {
			part := buf[:n]
			if err := sized.ReadFull(ctx, r, part); err != nil {
				return err
			}
			body = bytes.NewReader(part)
		}
		out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket:            aws.String(s.opts.Bucket),
			Key:               aws.String(key),
			UploadId:          uploadID,
			PartNumber:        aws.Int32(num),
			Body:              body,
			ContentLength:     aws.Int64(n),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
		})
		if err != nil {
			return fmt.Errorf("upload part %d: %w", num, err)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32})
		off += n
	}
	if !isSection {
		if err := sized.ExpectEOF(r); err != nil {
			return err
		}
	}
	in := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.opts.Bucket),
		Key:             aws.String(key),
		UploadId:        uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	if ifAbsent {
		in.IfNoneMatch = aws.String("*")
	}
	if _, err := s.client.CompleteMultipartUpload(ctx, in); err != nil {
		if ifAbsent {
			err = conditionFailed(err)
		}
		return fmt.Errorf("complete multipart upload: %w", err)
	}
	return nil
}

func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := objstore.ValidateKey(key); err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.opts.Bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("s3: get %s: %w", key, notFound(err))
	}
	if out.ContentLength == nil {
		return out.Body, nil // net/http still reports a body cut short of its framing
	}
	return sized.NewReader(ctx, out.Body, *out.ContentLength), nil
}

func (s *Store) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if err := objstore.ValidateKey(key); err != nil {
		return nil, err
	}
	if err := objstore.CheckRange(off, n); err != nil {
		return nil, err
	}
	b, err := s.getRange(ctx, key, off, n)
	if err != nil {
		return nil, fmt.Errorf("s3: get range %s [%d, %d): %w", key, off, off+n, err)
	}
	return b, nil
}

func (s *Store) getRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if n == 0 {
		// HTTP cannot express an empty range; check the bounds with a HEAD.
		info, err := s.Stat(ctx, key)
		if err != nil {
			return nil, err
		}
		if off > info.Size {
			return nil, fmt.Errorf("object has %d bytes: %w", info.Size, objstore.ErrShortRead)
		}
		return []byte{}, nil
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.opts.Bucket),
		Key:    aws.String(key),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1)),
	})
	if err != nil {
		if code, status := errorCode(err); code == "InvalidRange" || status == http.StatusRequestedRangeNotSatisfiable {
			return nil, fmt.Errorf("%w: %w", objstore.ErrShortRead, err)
		}
		return nil, notFound(err)
	}
	defer out.Body.Close()
	if err := checkContentRange(out, off, n); err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if err := sized.ReadFull(ctx, out.Body, buf); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", objstore.ErrShortRead, err)
	}
	return buf, nil
}

// checkContentRange verifies that the server answered with exactly the bytes
// asked for: a range reaching past the end comes back shorter, and a server
// that ignores Range sends the whole object.
func checkContentRange(out *s3.GetObjectOutput, off, n int64) error {
	if out.ContentLength != nil && *out.ContentLength != n {
		return fmt.Errorf("server sent %d bytes (Content-Range %q): %w", *out.ContentLength, aws.ToString(out.ContentRange), objstore.ErrShortRead)
	}
	cr := aws.ToString(out.ContentRange)
	if cr == "" {
		if off != 0 {
			return fmt.Errorf("server ignored the Range header: %w", objstore.ErrShortRead)
		}
		return nil
	}
	var start, end int64
	spec, _, _ := strings.Cut(strings.TrimPrefix(cr, "bytes "), "/")
	a, b, ok := strings.Cut(spec, "-")
	if ok {
		var err1, err2 error
		start, err1 = strconv.ParseInt(a, 10, 64)
		end, err2 = strconv.ParseInt(b, 10, 64)
		ok = err1 == nil && err2 == nil
	}
	if !ok || start != off || end != off+n-1 {
		return fmt.Errorf("server sent Content-Range %q for bytes %d-%d: %w", cr, off, off+n-1, objstore.ErrShortRead)
	}
	return nil
}

func (s *Store) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	if err := objstore.ValidateKey(key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.opts.Bucket), Key: aws.String(key)})
	if err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("s3: stat %s: %w", key, notFound(err))
	}
	return objstore.ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

func (s *Store) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket:  aws.String(s.opts.Bucket),
		Prefix:  aws.String(prefix),
		MaxKeys: aws.Int32(s.opts.ListPageSize),
	})
	var last string
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3: list %q: %w", prefix, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if last != "" && key <= last {
				return fmt.Errorf("s3: list %q: server returned %q after %q, out of order", prefix, key, last)
			}
			last = key
			info := objstore.ObjectInfo{Key: key, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}
			if err := fn(info); err != nil {
				return fmt.Errorf("s3: list %q: %w", prefix, err)
			}
		}
	}
	return nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	if err := objstore.ValidateKey(key); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.opts.Bucket), Key: aws.String(key)})
	if err != nil && !errors.Is(notFound(err), objstore.ErrNotFound) {
		return fmt.Errorf("s3: delete %s: %w", key, err)
	}
	return nil
}

func (s *Store) ListIncompleteUploads(ctx context.Context, prefix string, fn func(objstore.IncompleteUpload) error) error {
	p := s3.NewListMultipartUploadsPaginator(s.client, &s3.ListMultipartUploadsInput{
		Bucket: aws.String(s.opts.Bucket),
		Prefix: aws.String(prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3: list incomplete uploads %q: %w", prefix, err)
		}
		for _, u := range page.Uploads {
			iu := objstore.IncompleteUpload{Key: aws.ToString(u.Key), UploadID: aws.ToString(u.UploadId), Initiated: aws.ToTime(u.Initiated)}
			if err := fn(iu); err != nil {
				return fmt.Errorf("s3: list incomplete uploads %q: %w", prefix, err)
			}
		}
	}
	return nil
}

func (s *Store) AbortIncompleteUploads(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	var old []objstore.IncompleteUpload
	err := s.ListIncompleteUploads(ctx, prefix, func(u objstore.IncompleteUpload) error {
		if u.Initiated.Before(olderThan) {
			old = append(old, u)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	aborted := 0
	for _, u := range old {
		_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(s.opts.Bucket), Key: aws.String(u.Key), UploadId: aws.String(u.UploadID),
		})
		if err != nil && !errors.Is(notFound(err), objstore.ErrNotFound) {
			return aborted, fmt.Errorf("s3: abort upload %s of %s: %w", u.UploadID, u.Key, err)
		}
		aborted++
	}
	return aborted, nil
}

// Close releases idle connections of the default HTTP client.
func (s *Store) Close() error {
	if c, ok := s.client.Options().HTTPClient.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
	return nil
}

// Bucket returns the Store's bucket name.
func (s *Store) Bucket() string { return s.opts.Bucket }
