// Package store owns imgtool's local image store: one OCI image layout
// (image-spec image-layout.md) holding every image, with each image named by
// the fully qualified reference in its org.opencontainers.image.ref.name
// annotation.
//
// On disk, under the store directory:
//
//	oci-layout                  {"imageLayoutVersion": "1.0.0"}
//	index.json                  every named image; replaced atomically
//	blobs/<alg>/<hex>           content, shared by every image
//	.imgtool/ingest/<random>    blobs being written; renamed into blobs/ once verified
//	.imgtool/index.lock         flock held while index.json is read-modified-written
//	.imgtool/gc.lock            flock: shared by every open Store, exclusive in Prune
//
// Invariants: nothing appears under blobs/ before its content has been
// hashed and matched its name; index.json is only ever replaced by rename,
// under index.lock, so concurrent processes never lose each other's
// updates; and Prune, holding gc.lock exclusively, never runs while another
// Store is open, so it cannot delete a blob that a writer has committed but
// not yet referenced.
package store
