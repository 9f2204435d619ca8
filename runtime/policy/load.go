package policy

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// Load reads the policy at path; commands are the command names a rule
// may list. The file must be root's and writable by root alone: a policy
// anyone could change allows anything. A missing file is (nil, nil).
func Load(path string, commands []string) (*Policy, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Uid != 0 || st.Mode().Perm()&0o022 != 0 || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("policy %s: must be a file of root's that only root can write (chown root %s; chmod 644 %s)", path, path, path)
	}
	return Parse(f, path, commands)
}

// SudoCaller is who called sudo, from the environment sudo sets
// (SUDO_UID), with their groups; ok is false without sudo.
func SudoCaller() (c Caller, ok bool, err error) {
	v := os.Getenv("SUDO_UID")
	if v == "" {
		return c, false, nil
	}
	uid, err := strconv.Atoi(v)
	if err != nil {
		return c, true, fmt.Errorf("SUDO_UID %q is no user ID", v)
	}
	u, err := user.LookupId(v)
	if err != nil {
		return c, true, fmt.Errorf("the sudo caller (uid %d): %w", uid, err)
	}
	c = Caller{User: u.Username, UID: uid}
	gids, err := u.GroupIds()
	if err != nil {
		return c, true, fmt.Errorf("the groups of %s: %w", u.Username, err)
	}
	if g := os.Getenv("SUDO_GID"); g != "" {
		gids = append(gids, g)
	}
	for _, gid := range gids {
		if g, err := user.LookupGroupId(gid); err == nil {
			c.Groups = append(c.Groups, g.Name)
		}
	}
	return c, true, nil
}
