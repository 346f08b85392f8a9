// Package manifest owns the image data model that every other imgtool
// package speaks: media types (OCI and Docker v2 compat), the descriptors a
// manifest or index refers to, platform parsing and matching, and the
// validation of manifests and configs read from untrusted sources.
//
// It also assembles images: LayerDesc is what a written layer is known by;
// Append adds layers and history to a config (honouring SOURCE_DATE_EPOCH);
// Image and
// Index encode the blobs that make an image or index; ToDocker and
// FromDocker convert between OCI and Docker v2 schema 2 media types.
//
// It does no I/O and reads no clock or environment: callers hand it bytes,
// descriptors and times, so the same inputs always give the same digests.
package manifest
