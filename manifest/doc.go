// Package manifest owns the image data model that every other imgtool
// package speaks: media types (OCI and Docker v2 compat), the descriptors a
// manifest or index refers to, platform parsing and matching, and the
// validation of manifests read from untrusted sources.
//
// It does no I/O: callers hand it bytes and descriptors.
package manifest
