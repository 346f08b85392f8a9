package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/imgtool/imgtool/internal/flock"
	"github.com/imgtool/imgtool/layer"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"golang.org/x/sys/unix"
)

// mounter prepares a RUN's --mount list: bind sources, cache
// directories, secret files, and the mount points inside the tree, which
// are removed again after the run so that they do not end up in the
// layer (BuildKit's layers do not hold them either).
type mounter struct {
	s       *stageRun
	mounts  []Mount
	created []string   // host paths made as mount points, parents first
	locks   []*os.File // cache locks held for the run
	// agents serve the RUN's ssh mounts; sshMounts counts them.
	agents    []*sshListener
	sshMounts int
}

func newMounter(s *stageRun) *mounter { return &mounter{s: s} }

// add prepares one --mount. Secrets with env= go into env instead, and
// an ssh mount may set SSH_AUTH_SOCK there.
func (m *mounter) add(ctx context.Context, mnt *instructions.Mount, env *[]string) error {
	target := mnt.Target
	if target != "" && !path.IsAbs(target) {
		target = path.Join("/", m.s.img.Config.WorkingDir, target)
	}
	switch mnt.Type {
	case instructions.MountTypeBind:
		src, err := m.bindSource(ctx, mnt)
		if err != nil {
			return err
		}
		return m.mount(Mount{Type: "bind", Source: src, Target: target, ReadOnly: mnt.ReadOnly}, isDir(src))
	case instructions.MountTypeCache:
		id := mnt.CacheID
		if id == "" {
			id = target
		}
		dir, err := m.cache(ctx, id, mnt)
		if err != nil {
			return err
		}
		return m.mount(Mount{Type: "bind", Source: dir, Target: target, ReadOnly: mnt.ReadOnly}, true)
	case instructions.MountTypeTmpfs:
		return m.mount(Mount{Type: "tmpfs", Target: target}, true)
	case instructions.MountTypeSecret:
		return m.secret(mnt, target, env)
	case instructions.MountTypeSSH:
		return m.ssh(ctx, mnt, target, env)
	}
	return fmt.Errorf("--mount=type=%s is not supported", mnt.Type)
}

// cache returns the host directory of a cache mount, with its mode and
// (when privileged) owner set, holding its lock for the run: shared
// (sharing=shared, the default: any number of builds at once; it keeps
// prune --cache off), exclusive for sharing=locked (waiting for the
// others), and for private, which takes a fresh directory when another
// build uses it, as BuildKit does. The lock is a file beside the
// directory, never inside it (buildah#4342).
func (m *mounter) cache(ctx context.Context, id string, mnt *instructions.Mount) (string, error) {
	dir, err := m.s.r.cacheDir(id)
	if err != nil {
		return "", err
	}
	how, wait := unix.LOCK_SH, true
	switch mnt.CacheSharing {
	case instructions.MountSharingLocked:
		how = unix.LOCK_EX
	case instructions.MountSharingPrivate:
		how, wait = unix.LOCK_EX, false
	}
	held, err := m.lock(ctx, dir+".lock", how, wait)
	if err != nil {
		return "", fmt.Errorf("cache %q: %w", id, err)
	}
	if !held {
		if dir, err = m.s.r.tempDir("cache-"); err != nil {
			return "", err
		}
	}
	if mnt.Mode != nil {
		if err := os.Chmod(dir, os.FileMode(*mnt.Mode)&os.ModePerm); err != nil {
			return "", err
		}
	}
	if (mnt.UID != nil || mnt.GID != nil) && !m.s.r.rootless {
		uid, gid := -1, -1
		if mnt.UID != nil {
			uid = int(*mnt.UID)
		}
		if mnt.GID != nil {
			gid = int(*mnt.GID)
		}
		if err := os.Lchown(dir, uid, gid); err != nil {
			return "", fmt.Errorf("cache %q: %w", id, err)
		}
	}
	return dir, nil
}

// lock takes a flock (how: unix.LOCK_SH or LOCK_EX) on file, waiting for
// it when wait is set, and keeps it until cleanup. It reports whether it
// holds the lock.
func (m *mounter) lock(ctx context.Context, file string, how int, wait bool) (bool, error) {
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, err
	}
	if err := flock.Lock(ctx, f, how, wait); err != nil {
		f.Close()
		if errors.Is(err, flock.ErrBusy) {
			return false, nil
		}
		return false, err
	}
	m.locks = append(m.locks, f)
	return true, nil
}

// secret mounts the host file --secret id=ID,src=FILE names, or sets it
// as an environment variable with env=.
func (m *mounter) secret(mnt *instructions.Mount, target string, env *[]string) error {
	id := mnt.CacheID
	if id == "" && target != "" {
		id = path.Base(target)
	}
	if id == "" && mnt.Env != nil {
		id = *mnt.Env
	}
	file, ok := m.s.r.req.Secrets[id]
	if !ok {
		if mnt.Required {
			return fmt.Errorf("secret %q is required; give it with --secret id=%s,src=FILE", id, id)
		}
		return nil
	}
	if mnt.Env != nil && *mnt.Env != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("secret %q: %w", id, err)
		}
		*env = append(*env, *mnt.Env+"="+string(data))
		if mnt.Target == "" {
			return nil
		}
	}
	if target == "" {
		target = "/run/secrets/" + id
	}
	return m.mount(Mount{Type: "bind", Source: file, Target: target, ReadOnly: true}, false)
}

// bindSource is the host path a bind mount shows: inside a stage or
// image, or a copy of the context (so that .dockerignore holds, and a rw
// mount never writes into the user's files).
func (m *mounter) bindSource(ctx context.Context, mnt *instructions.Mount) (string, error) {
	src := m.s.r.context
	if mnt.From != "" {
		var err error
		if src, err = m.s.r.fromSource(ctx, mnt.From, m.s.idx); err != nil {
			return "", err
		}
		if err := src.open(ctx); err != nil {
			return "", err
		}
	}
	if src != m.s.r.context && mnt.ReadOnly {
		host, err := src.t.resolve(mnt.Source)
		if err != nil {
			return "", src.notFound(mnt.Source, err.Error())
		}
		return host, nil
	}
	dir, err := m.s.r.tempDir("bind-")
	if err != nil {
		return "", err
	}
	t, err := newTree(dir)
	if err != nil {
		return "", err
	}
	paths, err := src.match(mnt.Source)
	if err != nil {
		return "", err
	}
	c := &copier{ctx: ctx, w: newFSWriter(t, m.s.r.rootless), from: src}
	if err := c.copyMatch(match{src: src, path: paths[0]}, "/"+path.Base(paths[0]), false, false); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		return dir, err
	}
	return filepath.Join(dir, entries[0].Name()), nil
}

// script writes a heredoc that starts with #! to a file mounted at
// /dev/pipes/NAME and returns the path to run.
func (m *mounter) script(name, data string) (string, error) {
	// The name is the heredoc's delimiter, which a quoted one lets be
	// anything: keep one safe path component.
	if name = path.Base(path.Clean("/" + name)); name == "/" {
		name = "script"
	}
	dir, err := m.s.r.tempDir("script-")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	if err := m.mount(Mount{Type: "bind", Source: dir, Target: "/dev/pipes", ReadOnly: true}, true); err != nil {
		return "", err
	}
	return path.Join("/dev/pipes", name), nil
}

// mount makes the mount point (a directory, or an empty file for a file
// bind) and records the mount.
func (m *mounter) mount(mt Mount, dir bool) error {
	if mt.Target == "" || mt.Target == "/" {
		return fmt.Errorf("--mount needs a target other than /")
	}
	w := newFSWriter(m.s.rootfs, m.s.r.rootless)
	parent := mt.Target
	if !dir {
		parent = path.Dir(mt.Target)
	}
	defer w.restoreModes()
	if _, err := w.mkdirAll(parent, owner{}); err != nil {
		return fmt.Errorf("mount point %s: %w", mt.Target, err)
	}
	made := slicesSorted(w.written)
	if !dir {
		host, err := m.s.rootfs.resolve(parent)
		if err != nil {
			return err
		}
		f := filepath.Join(host, path.Base(mt.Target))
		if _, err := os.Lstat(f); errors.Is(err, os.ErrNotExist) {
			if err := w.openUp(host); err != nil {
				return err
			}
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				return fmt.Errorf("mount point %s: %w", mt.Target, err)
			}
			made = append(made, m.s.rootfs.rel(f))
		}
	}
	for _, rel := range made {
		m.created = append(m.created, filepath.Join(m.s.rootfs.root, rel))
	}
	// The executor mounts before it enters the rootfs, where a symlink
	// in the target would resolve against the host: give it the target
	// resolved inside the rootfs.
	host, err := m.s.rootfs.resolve(mt.Target)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", mt.Target, err)
	}
	mt.Target = "/" + m.s.rootfs.rel(host)
	m.mounts = append(m.mounts, mt)
	return nil
}

// removeTargets removes the mount points the run did not fill, deepest
// first.
func (m *mounter) removeTargets() error {
	w := newFSWriter(m.s.rootfs, m.s.r.rootless)
	defer w.restoreModes()
	for _, p := range slices.Backward(m.created) {
		if fi, err := os.Lstat(p); err == nil && (!fi.IsDir() && fi.Size() == 0 || fi.IsDir()) {
			if err := w.openUp(filepath.Dir(p)); err != nil {
				return err
			}
			if err := os.Remove(p); err != nil && !isNotEmpty(err) {
				return fmt.Errorf("remove mount point: %w", err)
			}
		}
	}
	m.created = nil
	return w.restoreModes()
}

func (m *mounter) cleanup() {
	for _, a := range m.agents {
		a.close()
	}
	m.agents = nil
	_ = m.removeTargets()
	for _, f := range m.locks {
		f.Close() // releases the flock
	}
	m.locks = nil
}

func slicesSorted(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.SortFunc(out, layer.ComparePaths)
	return out
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func isNotEmpty(err error) bool {
	return errors.Is(err, os.ErrExist) || errors.Is(err, unix.ENOTEMPTY)
}
