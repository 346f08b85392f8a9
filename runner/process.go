package runner

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	mobyuser "github.com/moby/sys/user"
	"golang.org/x/sys/unix"
)

// defaultPath is docker's PATH for images that set none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// startCommand resolves the user, environment, working directory and
// executable inside the (already pivoted) root, and starts the command.
func startCommand(cfg *config) (int, status) {
	u, err := resolveUser(cfg.User)
	if errors.Is(err, errUnmapped) && cfg.UnmappedUserAsRoot {
		fmt.Fprintf(os.Stderr, "imgtool: %v; running as root of the user namespace instead\n", err)
		u, err = resolveUser("")
	}
	if err != nil {
		return 0, status{Kind: "setup", Msg: err.Error()}
	}
	env := buildEnv(cfg.Env, u.Home, cfg.Hostname, cfg.TTY)
	cwd := cfg.Cwd
	if cwd == "" {
		cwd = "/"
	}
	// docker creates a missing working directory rather than failing.
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		return 0, status{Kind: "setup", Msg: fmt.Sprintf("create working directory %s: %v", cwd, err)}
	}
	exe, err := lookPath(cfg.Args[0], getenv(env, "PATH"), cwd)
	if err != nil {
		return 0, status{Kind: "exec", Code: NotFoundExit, Msg: err.Error()}
	}
	files := []uintptr{0, 1, 2}
	if cfg.TTY {
		slave, err := openConsole(os.NewFile(5, "console"), cfg.Winsize)
		if err != nil {
			return 0, status{Kind: "setup", Msg: err.Error()}
		}
		defer slave.Close()
		files = []uintptr{slave.Fd(), slave.Fd(), slave.Fd()}
	}
	sys := &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(u.Uid), Gid: uint32(u.Gid), NoSetGroups: !cfg.SetGroups},
		Setsid:     true,
	}
	if cfg.SetGroups {
		sys.Credential.Groups = toUint32(u.Sgids)
	}
	if cfg.TTY {
		sys.Setctty, sys.Ctty = true, 0
	}
	pid, err := syscall.ForkExec(exe, cfg.Args, &syscall.ProcAttr{
		Dir: cwd, Env: env, Files: files, Sys: sys,
	})
	if err != nil {
		code := 126
		if errors.Is(err, unix.ENOENT) {
			code = NotFoundExit
		}
		return 0, status{Kind: "exec", Code: code, Msg: fmt.Sprintf("exec %q: %v", cfg.Args[0], err)}
	}
	return pid, status{Kind: "ok"}
}

// errUnmapped marks a user whose ids the namespace lacks.
var errUnmapped = errors.New("not mapped into the user namespace")

// resolveUser resolves USER[:GROUP] in the image's /etc/passwd and
// /etc/group as docker does (numeric ids need no entry), and checks the
// ids exist in this user namespace.
func resolveUser(spec string) (*mobyuser.ExecUser, error) {
	defaults := &mobyuser.ExecUser{Uid: 0, Gid: 0, Home: "/"}
	u, err := mobyuser.GetExecUserPath(spec, defaults, "/etc/passwd", "/etc/group")
	if err != nil {
		return nil, fmt.Errorf("resolve user %q: %w", spec, err)
	}
	mapped := mappedIDs()
	for _, id := range append([]int{u.Uid, u.Gid}, u.Sgids...) {
		if !mapped(id) {
			return nil, fmt.Errorf("user %q needs id %d, which is %w: give the calling user subordinate ids in /etc/subuid and /etc/subgid and install newuidmap (package uidmap)", spec, id, errUnmapped)
		}
	}
	return u, nil
}

// mappedIDs returns whether an id is in this namespace's uid map (the
// gid map is built the same way), read once.
func mappedIDs() func(id int) bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return func(int) bool { return true } // cannot tell; let setuid decide
	}
	var ranges [][2]uint64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		inner, ierr := strconv.ParseUint(f[0], 10, 32)
		size, serr := strconv.ParseUint(f[2], 10, 32)
		if ierr == nil && serr == nil {
			ranges = append(ranges, [2]uint64{inner, inner + size})
		}
	}
	return func(id int) bool {
		for _, r := range ranges {
			if uint64(id) >= r[0] && uint64(id) < r[1] {
				return true
			}
		}
		return false
	}
}

// buildEnv adds docker's defaults to the given environment.
func buildEnv(env []string, home, hostname string, tty bool) []string {
	out := append([]string(nil), env...)
	add := func(k, v string) {
		if getenv(out, k) == "" && !hasKey(out, k) {
			out = append(out, k+"="+v)
		}
	}
	add("PATH", defaultPath)
	add("HOSTNAME", hostname)
	if tty {
		add("TERM", "xterm")
	}
	add("HOME", home)
	return out
}

func hasKey(env []string, k string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, k+"=") {
			return true
		}
	}
	return false
}

// getenv returns the last value of k, as the C library would.
func getenv(env []string, k string) string {
	v := ""
	for _, kv := range env {
		if strings.HasPrefix(kv, k+"=") {
			v = kv[len(k)+1:]
		}
	}
	return v
}

// lookPath finds name as a shell does, in the container's PATH (the
// init's own environment is empty on purpose).
func lookPath(name, pathEnv, cwd string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !path.IsAbs(p) {
			p = path.Join(cwd, p)
		}
		if err := executable(p); err != nil {
			return "", fmt.Errorf("exec: %q: %w", name, err)
		}
		return p, nil
	}
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		p := path.Join(dir, name)
		if !path.IsAbs(p) {
			p = path.Join(cwd, p)
		}
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return os.ErrPermission
	}
	return nil
}

func toUint32(ids []int) []uint32 {
	out := make([]uint32, len(ids))
	for i, id := range ids {
		out[i] = uint32(id)
	}
	return out
}
