package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// mounts records what the init mounted into a Writable rootfs and which
// mount points it had to create there, so that cleanup leaves the
// directory as the command left it (a build diffs it afterwards).
type mounts struct {
	writable bool
	mounted  []string // container paths, in mount order
	created  []string // container paths the init created, in creation order
}

// setupMounts builds the container's filesystem under cfg.State and
// pivots into it. It runs inside the new user and mount namespaces.
func setupMounts(cfg *config) (*mounts, error) {
	m := &mounts{writable: cfg.Rootfs == Writable || cfg.Rootfs == Layered}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make mounts private: %w", err)
	}
	// Scratch space lives in a tmpfs: it vanishes with the namespace,
	// even when the caller is killed.
	if err := unix.Mount("tmpfs", cfg.State, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return nil, fmt.Errorf("mount scratch tmpfs: %w", err)
	}
	root := filepath.Join(cfg.State, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, err
	}
	if err := mountRootfs(cfg, root); err != nil {
		return nil, err
	}
	etc, err := writeEtcFiles(cfg)
	if err != nil {
		return nil, err
	}
	steps := []func(string) error{
		m.mountProc,
		m.mountDev,
		func(r string) error { return m.mountSys(r, cfg.Network == NetworkNone) },
		func(r string) error { return m.mountEtc(r, etc) },
		func(r string) error { return m.mountUser(r, cfg.Mounts) },
	}
	for _, step := range steps {
		if err := step(root); err != nil {
			return nil, err
		}
	}
	if err := pivot(root); err != nil {
		return nil, err
	}
	if cfg.ReadOnly {
		if err := remountReadOnly("/"); err != nil {
			return nil, fmt.Errorf("make the root filesystem read-only: %w", err)
		}
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return nil, fmt.Errorf("set hostname: %w", err)
	}
	if cfg.Network == NetworkNone {
		if err := loopbackUp(); err != nil {
			return nil, fmt.Errorf("bring up lo: %w", err)
		}
	}
	return m, nil
}

// mountRootfs mounts cfg.Dir at root: bound as it is when Writable, else
// as the lower layer of an overlay, so that neither the command nor the
// mount points the init creates ever reach cfg.Dir. The overlay's upper
// layer is the caller's when Layered, else scratch that goes with the
// namespace.
func mountRootfs(cfg *config, root string) error {
	if cfg.Rootfs == Writable {
		if err := unix.Mount(cfg.Dir, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind the root filesystem: %w", err)
		}
		return nil
	}
	upper, work := cfg.Upper, cfg.Work
	lower := []string{cfg.Dir}
	if cfg.Rootfs == Layered {
		lower = append(slices.Clone(cfg.Lower), cfg.Dir)
	} else {
		upper, work = filepath.Join(cfg.State, "upper"), filepath.Join(cfg.State, "work")
		for _, d := range []string{upper, work} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
		}
	}
	for i, l := range lower {
		lower[i] = escapeOverlay(l)
	}
	// userxattr: inside a user namespace overlay keeps its whiteouts and
	// opaque markers in user.overlay.* (trusted.* needs init-ns root); it
	// also turns off redirect_dir and metacopy, so that Upper holds whole
	// entries a build can read as they are.
	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + escapeOverlay(upper) + ",workdir=" + escapeOverlay(work) + ",userxattr"
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return &setupError{kind: "overlay", err: fmt.Errorf("overlay over %s: %w", cfg.Dir, err)}
	}
	return nil
}

// escapeOverlay escapes the characters overlay's option parser splits on.
func escapeOverlay(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`)
	return r.Replace(p)
}

// target resolves a container path inside root (symlinks in the image
// cannot lead it out) and creates it as a directory or an empty file
// when missing, remembering what it created.
func (m *mounts) target(root, ctrPath string, dir bool) (string, error) {
	p, err := securejoin.SecureJoin(root, ctrPath)
	if err != nil {
		return "", fmt.Errorf("resolve %s in the root filesystem: %w", ctrPath, err)
	}
	if _, err := os.Lstat(p); err == nil {
		return p, nil
	}
	// Record each level created so cleanup can remove it again.
	rel, _ := filepath.Rel(root, p)
	parts := strings.Split(rel, string(filepath.Separator))
	cur := root
	for i, part := range parts {
		cur = filepath.Join(cur, part)
		if _, err := os.Lstat(cur); err == nil {
			continue
		}
		if i < len(parts)-1 || dir {
			err = os.Mkdir(cur, 0o755)
		} else {
			var f *os.File
			f, err = os.OpenFile(cur, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err == nil {
				f.Close()
			}
		}
		if err != nil {
			return "", fmt.Errorf("create mount point %s: %w", ctrPath, err)
		}
		m.created = append(m.created, "/"+filepath.ToSlash(filepath.Join(parts[:i+1]...)))
	}
	return p, nil
}

func (m *mounts) bind(root, src, ctrPath string, readOnly bool) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	p, err := m.target(root, ctrPath, st.IsDir())
	if err != nil {
		return err
	}
	if err := unix.Mount(src, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, ctrPath, err)
	}
	m.mounted = append(m.mounted, ctrPath)
	if readOnly {
		if err := remountReadOnly(p); err != nil {
			return fmt.Errorf("make %s read-only: %w", ctrPath, err)
		}
	}
	return nil
}

func (m *mounts) mount(root, ctrPath, fstype string, flags uintptr, data string) error {
	_, err := m.mountAt(root, ctrPath, fstype, flags, data)
	return err
}

// mountAt mounts a new fstype at ctrPath and returns where that is on
// the host side, resolved inside root.
func (m *mounts) mountAt(root, ctrPath, fstype string, flags uintptr, data string) (string, error) {
	p, err := m.target(root, ctrPath, true)
	if err != nil {
		return "", err
	}
	if err := unix.Mount(fstype, p, fstype, flags, data); err != nil {
		return "", fmt.Errorf("mount %s on %s: %w", fstype, ctrPath, err)
	}
	m.mounted = append(m.mounted, ctrPath)
	return p, nil
}

// remountReadOnly makes the bind mount at p read-only, keeping the flags
// the kernel locks for mounts inherited into a user namespace (dropping
// nosuid, nodev or noexec there is EPERM).
func remountReadOnly(p string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return err
	}
	keep := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
	return unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|keep, "")
}

// pivot makes root the process's root and detaches the old one, so no
// host path stays reachable.
func pivot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return err
	}
	// pivot_root(".", ".") stacks the old root under the new one; the
	// detach then drops it (runc does the same).
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	return unix.Chdir("/")
}

// cleanup runs after the command exits. For a Writable rootfs it
// unmounts what the init mounted and removes the mount points it created,
// so the build's diff sees only the command's own changes.
func (m *mounts) cleanup() {
	if m == nil || !m.writable {
		return
	}
	for i := len(m.mounted) - 1; i >= 0; i-- {
		_ = unix.Unmount(m.mounted[i], unix.MNT_DETACH)
	}
	for i := len(m.created) - 1; i >= 0; i-- {
		_ = os.Remove(m.created[i])
	}
}
