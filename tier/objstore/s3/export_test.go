package s3

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// StartUploadForTest starts a multipart upload and leaves it, as a crashed
// uploader would.
func (s *Store) StartUploadForTest(ctx context.Context, key string) error {
	_, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(s.opts.Bucket), Key: aws.String(key)})
	return err
}
