package runner

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

const (
	noSuidDevExec = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
)

// mountProc mounts a procfs of the new pid namespace. Where the kernel
// refuses (a /proc with masked paths in a nested container), the host's
// is bound instead: less isolated, but the command still runs.
func (m *mounts) mountProc(root string) error {
	err := m.mount(root, "/proc", "proc", noSuidDevExec, "")
	if err == nil {
		return nil
	}
	if berr := m.bind(root, "/proc", "/proc", false); berr != nil {
		return fmt.Errorf("%w (binding the host's /proc failed too: %v)", err, berr)
	}
	return nil
}

// devices are bound from the host: mknod is not allowed in a user
// namespace.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

func (m *mounts) mountDev(root string) error {
	dev, err := m.mountAt(root, "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k")
	if err != nil {
		return err
	}
	// dev is the tmpfs just mounted (where the image's /dev resolves
	// inside root): nothing of the image is in it, so its entries are
	// made directly, with no walk to resolve them, and need no removal.
	for _, d := range devices {
		p := filepath.Join(dev, d)
		// An empty file to bind the device on, in one call.
		if err := unix.Mknod(p, unix.S_IFREG|0o644, 0); err != nil {
			return fmt.Errorf("create /dev/%s: %w", d, err)
		}
		if err := unix.Mount("/dev/"+d, p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", d, err)
		}
		m.mounted = append(m.mounted, "/dev/"+d)
	}
	links := [][2]string{
		{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
	}
	for _, l := range links {
		if err := unix.Symlink(l[0], filepath.Join(dev, l[1])); err != nil {
			return fmt.Errorf("create /dev/%s: %w", l[1], err)
		}
	}
	if err := m.mountDevDir(dev, "pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return err
	}
	if err := m.mountDevDir(dev, "shm", "tmpfs", noSuidDevExec, "mode=1777,size=65536k"); err != nil {
		return err
	}
	// POSIX message queues of the new ipc namespace; optional.
	_ = m.mountDevDir(dev, "mqueue", "mqueue", noSuidDevExec, "")
	return nil
}

// mountDevDir mounts fstype on a new directory name in the /dev tmpfs.
func (m *mounts) mountDevDir(dev, name, fstype string, flags uintptr, data string) error {
	p := filepath.Join(dev, name)
	if err := unix.Mkdir(p, 0o755); err != nil {
		return fmt.Errorf("create /dev/%s: %w", name, err)
	}
	if err := unix.Mount(fstype, p, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on /dev/%s: %w", fstype, name, err)
	}
	m.mounted = append(m.mounted, "/dev/"+name)
	return nil
}

// mountSys gives a read-only /sys where the kernel allows it: a new sysfs
// needs a network namespace of our own; otherwise the host's is bound.
// Neither is essential, so failing to mount it is not an error.
func (m *mounts) mountSys(root string, ownNet bool) error {
	if ownNet {
		if err := m.mount(root, "/sys", "sysfs", noSuidDevExec|unix.MS_RDONLY, ""); err == nil {
			return nil
		}
	}
	_ = m.bind(root, "/sys", "/sys", true)
	return nil
}

// writeEtcFiles writes the container's /etc/hosts, /etc/hostname and
// /etc/resolv.conf into the scratch tmpfs, before the pivot hides the
// host's resolv.conf.
func writeEtcFiles(cfg *config) (map[string]string, error) {
	dir := filepath.Join(cfg.State, "etc")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + cfg.Hostname + "\n"
	for _, h := range cfg.Hosts {
		hosts += h + "\n"
	}
	resolv := ""
	if cfg.Network != NetworkNone {
		if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
			resolv = string(b)
		}
	}
	files := map[string]string{"hosts": hosts, "hostname": cfg.Hostname + "\n", "resolv.conf": resolv}
	out := make(map[string]string, len(files))
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return nil, err
		}
		out["/etc/"+name] = p
	}
	return out, nil
}

func (m *mounts) mountEtc(root string, files map[string]string) error {
	for _, name := range []string{"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"} {
		if err := m.bind(root, files[name], name, false); err != nil {
			return err
		}
	}
	return nil
}

func (m *mounts) mountUser(root string, ms []Mount) error {
	for _, mt := range ms {
		if mt.Tmpfs {
			if err := m.mount(root, mt.Target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
				return err
			}
			continue
		}
		if err := m.bind(root, mt.Source, mt.Target, mt.ReadOnly); err != nil {
			return err
		}
	}
	return nil
}

// loopbackUp sets IFF_UP on lo in the new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
