package build

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// maxIDFile bounds what is read of an image's /etc/passwd or /etc/group.
const maxIDFile = 4 << 20

// resolver finds the host path of a path inside a stage: a tree, or the
// view of a stage without one (fsView).
type resolver interface {
	resolve(p string) (string, error)
}

// lookupID finds name in an /etc/passwd or /etc/group of the stage's tree
// and returns its id (field 3) and, for passwd, its primary group
// (field 4).
func lookupID(t resolver, file, name string) (id, group int, err error) {
	host, err := t.resolve(file)
	if errors.Is(err, errNoStream) {
		return 0, 0, err
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%q: the image has no %s to look it up in", name, file)
	}
	f, err := os.Open(host)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxIDFile))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 4 || fields[0] != name {
			continue
		}
		id, err1 := strconv.Atoi(fields[2])
		group, err2 := strconv.Atoi(fields[3])
		if err1 != nil || (file == "/etc/passwd" && err2 != nil) {
			return 0, 0, fmt.Errorf("%q: malformed entry in %s", name, file)
		}
		return id, group, nil
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", file, err)
	}
	return 0, 0, fmt.Errorf("%q not found in the image's %s", name, file)
}

// parseOwner resolves a --chown or USER value ("user", "uid",
// "user:group", "uid:gid") in the stage's /etc/passwd and /etc/group.
// A user without a group takes the user's primary group, or for a uid
// the image does not list, the same number as docker does.
func (s *stageRun) parseOwner(spec string) (owner, error) {
	return parseOwner(s.rootfs, spec)
}

// ResolveUser resolves a USER value ("name", "uid", "name:group",
// "uid:gid") in the /etc/passwd and /etc/group of the root filesystem
// rootfs, reading them inside it whatever symlinks it holds, as an
// Executor must before it switches to the user.
func ResolveUser(rootfs, user string) (uid, gid int, err error) {
	t, err := newTree(rootfs)
	if err != nil {
		return 0, 0, err
	}
	o, err := parseOwner(t, user)
	if err != nil {
		return 0, 0, fmt.Errorf("USER %s: %w", user, err)
	}
	return o.uid, o.gid, nil
}

func parseOwner(t resolver, spec string) (owner, error) {
	if spec == "" {
		return owner{}, nil
	}
	u, g, hasGroup := strings.Cut(spec, ":")
	var o owner
	if n, err := strconv.Atoi(u); err == nil && n >= 0 {
		o.uid, o.gid = n, n
		if _, pg, err := lookupUID(t, n); err == nil {
			o.gid = pg
		} else if errors.Is(err, errNoStream) {
			return owner{}, err
		}
	} else {
		uid, pg, err := lookupID(t, "/etc/passwd", u)
		if err != nil {
			return owner{}, fmt.Errorf("user %w", err)
		}
		o.uid, o.gid = uid, pg
	}
	if hasGroup {
		if n, err := strconv.Atoi(g); err == nil && n >= 0 {
			o.gid = n
		} else {
			gid, _, err := lookupID(t, "/etc/group", g)
			if err != nil {
				return owner{}, fmt.Errorf("group %w", err)
			}
			o.gid = gid
		}
	}
	return o, nil
}

// lookupUID finds uid's primary group in /etc/passwd.
func lookupUID(t resolver, uid int) (int, int, error) {
	host, err := t.resolve("/etc/passwd")
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Open(host)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxIDFile))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 4 && fields[2] == strconv.Itoa(uid) {
			if g, err := strconv.Atoi(fields[3]); err == nil {
				return uid, g, nil
			}
		}
	}
	return 0, 0, fs.ErrNotExist
}

// userOwner is the owner of the stage's USER, for what WORKDIR creates.
func (s *stageRun) userOwner() (owner, error) {
	if s.img.Config.User == "" {
		return owner{}, nil
	}
	o, err := s.parseOwner(s.img.Config.User)
	if err != nil {
		return owner{}, fmt.Errorf("USER %s: %w", s.img.Config.User, err)
	}
	return o, nil
}
