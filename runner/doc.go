// Package runner runs one process inside a root filesystem, rootless, in
// new user, mount, pid, uts and ipc namespaces (and optionally a network
// namespace with only loopback). It owns the id mapping, the mounts
// (rootfs, /proc, /dev, /sys, binds, tmpfs), pivot_root, the process's
// user, environment, working directory, signals, terminal and exit
// status. It knows nothing about images or registries: callers hand it a
// directory.
//
// The parent side (Run) starts the binary again as a hidden init
// (see IsInit and Init) inside the new namespaces. The init waits until
// the parent has written its id maps, sets up the mounts, pivots into the
// root, then starts the command as its child and stays PID 1: it reaps
// every orphan so zombies never pile up, forwards signals, and exits with
// the command's status (128+N when the command died of signal N).
//
// It uses no cgroups: rootless processes on hybrid cgroup hosts cannot.
package runner
