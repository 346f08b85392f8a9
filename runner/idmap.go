package runner

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	mobyuser "github.com/moby/sys/user"
)

// idRange maps Size ids from Inner (inside the namespace) to Outer.
type idRange struct{ Inner, Outer, Size uint32 }

// idMapping is how the user namespace's ids map onto the caller's.
type idMapping struct {
	UIDs, GIDs []idRange
	// Helper: the maps need newuidmap/newgidmap (setuid helpers that
	// check /etc/subuid and /etc/subgid), because they give more than the
	// caller's own id.
	Helper bool
	// Root: the caller is root of its namespace and maps what it has.
	Root bool
}

// ownRanges returns the ranges of a /proc/self/{uid,gid}_map as identity
// ranges: what root may pass on unchanged to a child namespace (all ids
// on a host, only some inside a container).
func ownRanges(file string) []idRange {
	ms, err := mobyuser.ParseIDMapFile(file)
	if err != nil || len(ms) == 0 {
		return []idRange{{0, 0, 1}}
	}
	out := make([]idRange, 0, len(ms))
	for _, m := range ms {
		out = append(out, idRange{uint32(m.ID), uint32(m.ID), uint32(m.Count)})
	}
	return out
}

// setgroupsAllowed reports whether this namespace may call setgroups (a
// parent namespace can deny it for good).
func setgroupsAllowed() bool {
	b, err := os.ReadFile("/proc/self/setgroups")
	return err != nil || strings.TrimSpace(string(b)) != "deny"
}

// chooseMapping picks the widest mapping the caller may have: identity
// for root, the caller plus its subordinate range when /etc/subuid and
// /etc/subgid give one and the helpers are installed, else the caller
// alone mapped to 0 (with a notice, since then only root exists inside).
func chooseMapping(uid, gid int) (idMapping, string) {
	if uid == 0 {
		// Root keeps every id it has: all of them on a host, those of its
		// own mapping inside a container.
		return idMapping{UIDs: ownRanges("/proc/self/uid_map"), GIDs: ownRanges("/proc/self/gid_map"), Root: true}, ""
	}
	self := idMapping{UIDs: []idRange{{0, uint32(uid), 1}}, GIDs: []idRange{{0, uint32(gid), 1}}}
	notice := fmt.Sprintf("imgtool: uid %d has no subordinate ids (/etc/subuid, /etc/subgid and newuidmap from the uidmap package): mapping it to root alone, so only uid 0 exists in the container", uid)
	if !hasEntries("/etc/subuid") {
		// The common case in CI containers: no need to look the user up.
		return self, notice
	}
	names := []string{strconv.Itoa(uid)}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		names = append(names, u.Username)
	}
	subu, uerr := subIDs("/etc/subuid", names)
	subg, gerr := subIDs("/etc/subgid", names)
	_, nerr := exec.LookPath("newuidmap")
	_, gnerr := exec.LookPath("newgidmap")
	if uerr != nil || gerr != nil || nerr != nil || gnerr != nil {
		return self, notice
	}
	return idMapping{
		UIDs:   []idRange{{0, uint32(uid), 1}, {1, uint32(subu.SubID), uint32(subu.Count)}},
		GIDs:   []idRange{{0, uint32(gid), 1}, {1, uint32(subg.SubID), uint32(subg.Count)}},
		Helper: true,
	}, ""
}

// hasEntries reports whether file exists and has a line other than a
// comment or blank.
func hasEntries(file string) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return true
		}
	}
	return false
}

// subIDs returns the first range of file that belongs to one of names.
func subIDs(file string, names []string) (mobyuser.SubID, error) {
	ids, err := mobyuser.ParseSubIDFileFilter(file, func(s mobyuser.SubID) bool {
		for _, n := range names {
			if s.Name == n {
				return true
			}
		}
		return false
	})
	if err != nil {
		return mobyuser.SubID{}, err
	}
	for _, s := range ids {
		if s.Count > 0 && s.SubID > 0 && s.SubID+s.Count <= 1<<32 {
			return s, nil
		}
	}
	return mobyuser.SubID{}, fmt.Errorf("%s: no range for %v", file, names)
}

// write installs a helper mapping on process pid, whose user namespace
// is new and not yet mapped. (Mappings without helpers are written by
// the Go runtime when it starts the process: see sysMap.)
func (m idMapping) write(pid int) error {
	if err := runHelper("newuidmap", pid, m.UIDs); err != nil {
		return err
	}
	return runHelper("newgidmap", pid, m.GIDs)
}

func sysMap(rs []idRange) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(rs))
	for i, r := range rs {
		out[i] = syscall.SysProcIDMap{ContainerID: int(r.Inner), HostID: int(r.Outer), Size: int(r.Size)}
	}
	return out
}

func runHelper(name string, pid int, rs []idRange) error {
	args := []string{strconv.Itoa(pid)}
	for _, r := range rs {
		args = append(args, strconv.FormatUint(uint64(r.Inner), 10), strconv.FormatUint(uint64(r.Outer), 10), strconv.FormatUint(uint64(r.Size), 10))
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// setGroups reports whether the container may set supplementary groups.
func (m idMapping) setGroups() bool {
	return m.Helper || (m.Root && setgroupsAllowed())
}
