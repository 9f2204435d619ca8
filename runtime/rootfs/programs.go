package rootfs

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"path"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/helper"
)

// MissingInterpreter tells, before a program is started, whether the
// kernel would refuse it for want of the interpreter its #! line names or
// the loader its ELF header asks for, and returns that path ("" when
// nothing is missing, or the program itself is not found: the runtime
// reports that). runc reports an execve that fails this way only after it
// said the process started ("exec …: no such file or directory", status
// 255 or 1), too late for a shell's 127. Paths resolve in root, the
// container's own view of itself (backend.Container.Root): a #! line may
// name /run/current-system/sw/bin/bash, on the container's /run.
func MissingInterpreter(root, prog string, env []string) string {
	file := FindProgram(root, prog, env)
	if file == "" {
		return ""
	}
	f, err := Open(root, file)
	if err != nil {
		return ""
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	interp := ""
	switch {
	case bytes.HasPrefix(head, []byte("#!")):
		line, _, _ := bytes.Cut(head[2:], []byte("\n"))
		if fields := strings.Fields(string(line)); len(fields) > 0 {
			interp = fields[0]
		}
	case bytes.HasPrefix(head, []byte(elf.ELFMAG)):
		ef, err := elf.NewFile(f)
		if err != nil {
			return ""
		}
		for _, p := range ef.Progs {
			if p.Type == elf.PT_INTERP {
				b := make([]byte, p.Filesz)
				if _, err := p.ReadAt(b, 0); err == nil {
					interp = string(bytes.TrimRight(b, "\x00"))
				}
			}
		}
	}
	if interp == "" || !path.IsAbs(interp) {
		return ""
	}
	if g, err := Open(root, interp); errors.Is(err, os.ErrNotExist) {
		return interp
	} else if err == nil {
		g.Close()
	}
	return ""
}

// FindProgram finds prog as the hold and runc do (helper.LookPath), in
// root; relative paths are from /, the processes' working directory.
func FindProgram(root, prog string, env []string) string {
	file, err := helper.LookPath(prog, env, func(p string) (os.FileInfo, error) {
		f, err := Open(root, p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return f.Stat()
	})
	if err != nil {
		return ""
	}
	return path.Join("/", file)
}

// Runnable tells whether prog, found in root as the container would find
// it (FindProgram), is a regular file with an execute bit that starts as a
// program does (ELF, or "#!"). False is not a verdict: the program may be
// on a mount the container makes itself (/run's wrappers, the current
// system's link), or fail to execute; the hold says which, as data.
func Runnable(root, prog string, env []string) bool {
	file := FindProgram(root, prog, env)
	if file == "" {
		return false
	}
	f, err := Open(root, file)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Mode()&0o111 == 0 {
		return false
	}
	head := make([]byte, 4)
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	return bytes.HasPrefix(head, []byte("#!")) || bytes.HasPrefix(head, []byte(elf.ELFMAG))
}
