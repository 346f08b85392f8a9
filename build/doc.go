// Package build turns a Dockerfile and its build context into an OCI image
// in the local store, without a daemon and without root.
//
// It owns the Dockerfile (parsed with BuildKit's parser, instructions and
// shell packages, never by hand, so that syntax and variable expansion mean
// what they mean to docker build), the stage graph and --target pruning, the
// build context and its .dockerignore, and the execution of each
// instruction: COPY and ADD write files into the stage's root filesystem and
// straight into a layer; RUN runs through an Executor (rootless namespaces,
// provided by the caller) and its changes become a layer through a snapshot
// diff; the other instructions change the image config. Images are
// assembled with package manifest and written into a store.Store.
package build
