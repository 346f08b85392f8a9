package registry

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// SetUser gives user password in the htpasswd file at path (created, mode
// 0600, if absent), replacing the user's line if there is one; it reports
// whether the user already existed. Other lines, comments included, are
// kept as they were. The file is rewritten atomically under a lock, so a
// serving registry picks up the change on its next request.
func SetUser(path, user, password string, cost int) (existed bool, err error) {
	if err := validUserName(user); err != nil {
		return false, err
	}
	if password == "" {
		return false, errors.New("empty password")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return false, fmt.Errorf("hash password: %w", err)
	}
	err = editHtpasswd(path, true, func(lines []string) ([]string, error) {
		entry := user + ":" + string(hash)
		for i, l := range lines {
			if lineUser(l) == user {
				lines[i], existed = entry, true
				return lines, nil
			}
		}
		return append(lines, entry), nil
	})
	return existed, err
}

// RemoveUser deletes user's line from the htpasswd file at path; a user
// the file does not hold is ErrNoSuchUser and leaves the file untouched.
func RemoveUser(path, user string) error {
	return editHtpasswd(path, false, func(lines []string) ([]string, error) {
		for i, l := range lines {
			if lineUser(l) == user {
				return append(lines[:i], lines[i+1:]...), nil
			}
		}
		return nil, fmt.Errorf("remove %q from %s: %w", user, path, ErrNoSuchUser)
	})
}

func lineUser(line string) string {
	name, _, ok := strings.Cut(line, ":")
	if !ok || strings.HasPrefix(strings.TrimSpace(line), "#") {
		return ""
	}
	return name
}

// editHtpasswd rewrites the file through edit, refusing to touch a file
// that does not parse (its owner should fix it, not have it "repaired").
func editHtpasswd(path string, create bool, edit func([]string) ([]string, error)) error {
	if create {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("create directory of %s: %w", path, err)
		}
	}
	unlock, err := lockDir(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer unlock()
	perm := os.FileMode(0o600)
	var lines []string
	switch fi, err := os.Stat(path); {
	case err == nil:
		if _, err := readHtpasswd(path); err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read htpasswd file: %w", err)
		}
		if s := strings.TrimRight(string(data), "\n"); s != "" {
			lines = strings.Split(s, "\n")
		}
		perm = fi.Mode().Perm()
	case errors.Is(err, fs.ErrNotExist) && create:
	default:
		return fmt.Errorf("read htpasswd file: %w", err)
	}
	lines, err = edit(lines)
	if err != nil {
		return err
	}
	out := strings.Join(lines, "\n")
	if out != "" {
		out += "\n"
	}
	return writeFileAtomic(path, []byte(out), perm)
}
