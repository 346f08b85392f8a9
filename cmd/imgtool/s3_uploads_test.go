package main_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
	"github.com/opencontainers/go-digest"
)

// TestS3ChunkedUploadAcrossReplicas sends each chunk of an upload to the
// other replica than the one before, with chunks smaller and larger than
// S3's 5 MiB minimum part: the blob comes out whole on both, and no
// multipart upload or upload state is left in the bucket.
func TestS3ChunkedUploadAcrossReplicas(t *testing.T) {
	t.Parallel() // independent: each test has a key prefix of its own
	a, b, prefix := startS3Pair(t)
	replicas := []string{a.addr, b.addr}
	const MiB = 1 << 20
	for _, tc := range []struct {
		name   string
		chunks []int
		last   int // bytes sent with the closing PUT
	}{
		{"small chunks", []int{1024, 1, 100 << 10, 7}, 5},
		{"chunks across the 5 MiB part minimum", []int{3 * MiB, 3 * MiB, 1024, MiB}, 0},
		{"a chunk over one part, then a byte", []int{11 * MiB, 1}, 3},
		{"empty", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			total := tc.last
			for _, n := range tc.chunks {
				total += n
			}
			data := make([]byte, total)
			rand.Read(data)
			loc := strings.TrimPrefix(postUpload(t, replicas[0], "chunked/app"), "http://"+replicas[0])
			off := 0
			for i, n := range tc.chunks {
				host, other := replicas[(i+1)%2], replicas[i%2]
				if off > 0 { // a chunk that does not continue the upload is refused
					patch(t, host, "http://"+host+loc, data[:1], "0-0", http.StatusRequestedRangeNotSatisfiable)
				}
				patch(t, host, "http://"+host+loc, data[off:off+n], fmt.Sprintf("%d-%d", off, off+n-1), http.StatusAccepted)
				off += n
				if got, want := uploadRange(t, other, loc), fmt.Sprintf("0-%d", max(off-1, 0)); got != want {
					t.Fatalf("after chunk %d: the other replica reports Range %q, want %q", i, got, want)
				}
			}
			host := replicas[(len(tc.chunks)+1)%2]
			d := digest.FromBytes(data)
			req, _ := http.NewRequest(http.MethodPut, "http://"+host+loc+"?digest="+d.String(), bytes.NewReader(data[off:]))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("closing PUT: %s", resp.Status)
			}
			for _, r := range replicas {
				if got := getBlob(t, r, "/v2/chunked/app/blobs/"+d.String()); !bytes.Equal(got, data) {
					t.Fatalf("blob through %s: %d bytes, digest %s, want %d bytes", r, len(got), digest.FromBytes(got), len(data))
				}
			}
		})
	}
	checkBucketClean(t, prefix)
}

// TestS3UploadCancelAndPurgeAcrossReplicas: an upload cancelled through one
// replica is unknown to the other, and a replica started with a short
// --upload-ttl purges what another replica's clients abandoned; neither
// leaves a multipart upload behind in the bucket.
func TestS3UploadCancelAndPurgeAcrossReplicas(t *testing.T) {
	t.Parallel() // independent: each test has a key prefix of its own
	a, b, prefix := startS3Pair(t, "--access-log=false")
	chunk := bytes.Repeat([]byte("x"), 4096)

	cancelled := postUpload(t, a.addr, "cancel/app")
	patch(t, b.addr, strings.Replace(cancelled, a.addr, b.addr, 1), chunk, "0-4095", http.StatusAccepted)
	if code := request(t, http.MethodDelete, a.addr, strings.TrimPrefix(cancelled, "http://"+a.addr)); code != http.StatusNoContent {
		t.Fatalf("cancel through a: %d", code)
	}
	if code := request(t, http.MethodGet, b.addr, strings.TrimPrefix(cancelled, "http://"+a.addr)); code != http.StatusNotFound {
		t.Fatalf("status through b of the upload cancelled through a: %d, want 404", code)
	}

	abandoned := postUpload(t, b.addr, "purge/app")
	patch(t, b.addr, abandoned, chunk, "0-4095", http.StatusAccepted)
	time.Sleep(1100 * time.Millisecond)
	startRegistry(t, t.TempDir(), append(s3Flags(s3Env(t), prefix), "--access-log=false", "--upload-ttl", "1s")...)
	path := strings.TrimPrefix(abandoned, "http://"+b.addr)
	deadline := time.Now().Add(20 * time.Second)
	for request(t, http.MethodGet, a.addr, path) != http.StatusNotFound {
		if time.Now().After(deadline) {
			t.Fatal("the upload abandoned for over --upload-ttl was not purged within 20s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkBucketClean(t, prefix)
}

// TestS3UploadStateBehindData: when a session's saved state is behind its
// stored bytes (a replica stopped between storing a chunk and saving the
// state), which S3 cannot read back before the upload completes, the
// other replica says the upload cannot be resumed instead of hashing the
// wrong bytes, and the session can still be cancelled without leftovers.
func TestS3UploadStateBehindData(t *testing.T) {
	t.Parallel() // independent: each test has a key prefix of its own
	a, b, prefix := startS3Pair(t, "--access-log=false")
	loc := postUpload(t, a.addr, "behind/app")
	path := strings.TrimPrefix(loc, "http://"+a.addr)
	id := path[strings.LastIndex(path, "/")+1:]
	stateKey := prefix + "/imgtool/v1/repositories/behind/app/_uploads/" + id + "/state"
	patch(t, a.addr, loc, bytes.Repeat([]byte("a"), 1000), "0-999", http.StatusAccepted)
	cl := s3Client(t)
	bucket := aws.String(s3Env(t)["S3_BUCKET"])
	old, err := cl.GetObject(&s3.GetObjectInput{Bucket: bucket, Key: aws.String(stateKey)})
	if err != nil {
		t.Fatal(err)
	}
	saved, err := io.ReadAll(old.Body)
	old.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	patch(t, a.addr, loc, bytes.Repeat([]byte("b"), 1000), "1000-1999", http.StatusAccepted)
	if _, err := cl.PutObject(&s3.PutObjectInput{Bucket: bucket, Key: aws.String(stateKey), Body: bytes.NewReader(saved)}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + b.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "BLOB_UPLOAD_INVALID") {
		t.Fatalf("status of an upload whose state is behind its data: %s %s", resp.Status, body)
	}
	if code := request(t, http.MethodDelete, b.addr, path); code != http.StatusNoContent {
		t.Fatalf("cancel: %d", code)
	}
	checkBucketClean(t, prefix)
}

// checkBucketClean fails when uploads left state or open multipart uploads
// under prefix.
func checkBucketClean(t *testing.T, prefix string) {
	t.Helper()
	if open := openMultipartUploads(t, prefix); len(open) != 0 {
		t.Errorf("multipart uploads left open: %q", open)
	}
	for _, k := range s3Keys(t, prefix) {
		if strings.Contains(k, "/_uploads/") {
			t.Errorf("upload state left in the bucket: %s", k)
		}
	}
}

func uploadRange(t *testing.T, addr, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("upload status through %s: %s", addr, resp.Status)
	}
	return resp.Header.Get("Range")
}

func getBlob(t *testing.T, addr, path string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s through %s: %s %v", path, addr, resp.Status, err)
	}
	return body
}
