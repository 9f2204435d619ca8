package layers

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/nixrescue/nixrescue/runtime/hint"
)

// Keys are what a session tries on a locked LUKS volume: each key file
// in turn, then the passphrase read from standard input ("-" among the
// files), then, with neither, up to three prompts on the terminal. Keys
// are held as briefly as can be and cleared after use; Clear clears what
// is kept (the passphrase from standard input, read once).
type Keys struct {
	files []string
	stdin io.Reader
	// fromStdin is the passphrase read from standard input; read tells
	// whether it was.
	fromStdin []byte
	read      bool
	// Prompt asks for a passphrase, or is nil when there is no
	// terminal.
	Prompt func(prompt string) ([]byte, error)
	// prompted are passphrases typed, kept for the next volume (a second
	// volume with the same passphrase, as installers make them).
	prompted [][]byte
}

// NewKeys checks key files (each a readable regular file, or "-") and
// returns the keys; the terminal (/dev/tty) prompts when there is no key
// file.
func NewKeys(files []string, stdin io.Reader) (*Keys, error) {
	for _, f := range files {
		if f == "-" {
			continue
		}
		st, err := os.Stat(f)
		switch {
		case err != nil:
			return nil, hint.Errorf("{KeyFile %s}: %w: give the file that holds the key", f, errors.Unwrap(err))
		case st.IsDir():
			return nil, hint.Errorf("{KeyFile %s} is a directory: give the file that holds the key", f)
		case !st.Mode().IsRegular():
			return nil, hint.Errorf("{KeyFile %s} is not a regular file: give the file that holds the key ({KeyFile -} for a passphrase on standard input)", f)
		}
		fh, err := os.Open(f)
		if err != nil {
			return nil, hint.Errorf("{KeyFile %s} cannot be read: %w", f, errors.Unwrap(err))
		}
		fh.Close()
	}
	k := &Keys{files: files, stdin: stdin}
	if len(files) == 0 {
		k.Prompt = terminalPrompt
	}
	return k, nil
}

// ErrNoKey says no key was given and no terminal can ask for one.
var ErrNoKey = errors.New("no key")

// Unlock tries the keys on a volume with open (which returns ErrBadKey
// for a wrong key) until one opens it. prompt names the volume for the
// terminal. It returns ErrNoKey when there was nothing to try, ErrBadKey
// when nothing given opened it.
func (k *Keys) Unlock(prompt string, open func(key []byte) error) error {
	tried := false
	try := func(key []byte) (bool, error) {
		tried = true
		err := open(key)
		if errors.Is(err, ErrBadKey) {
			return false, nil
		}
		return err == nil, err
	}
	for _, f := range k.files {
		var key []byte
		if f == "-" {
			if err := k.readStdin(); err != nil {
				return err
			}
			key = k.fromStdin
		} else {
			b, err := os.ReadFile(f)
			if err != nil {
				return hint.Errorf("{KeyFile %s}: %w", f, err)
			}
			key = b
		}
		ok, err := try(key)
		if f != "-" {
			clear(key)
		}
		if ok || err != nil {
			return err
		}
	}
	for _, p := range k.prompted {
		if ok, err := try(p); ok || err != nil {
			return err
		}
	}
	if k.Prompt != nil {
		for i := 0; i < 3; i++ {
			p, err := k.Prompt(prompt)
			if errors.Is(err, ErrNoKey) {
				break
			}
			if err != nil {
				return err
			}
			ok, err := try(p)
			if ok {
				k.prompted = append(k.prompted, p)
				return nil
			}
			clear(p)
			if err != nil {
				return err
			}
		}
	}
	if !tried {
		return ErrNoKey
	}
	return ErrBadKey
}

// maxPassphrase bounds a passphrase read from standard input.
const maxPassphrase = 4096

// readStdin reads the passphrase on standard input once: its first line,
// without the newline. It reads a byte at a time, so that what follows
// the line stays for the command the session runs.
func (k *Keys) readStdin() error {
	if k.read {
		return nil
	}
	k.read = true
	buf := make([]byte, 0, 128)
	one := make([]byte, 1)
	for len(buf) < maxPassphrase {
		n, err := k.stdin.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				break
			}
			if len(buf) == cap(buf) {
				grown := make([]byte, len(buf), 2*cap(buf))
				copy(grown, buf)
				clear(buf)
				buf = grown
			}
			buf = append(buf, one[0])
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			clear(buf)
			return fmt.Errorf("read the passphrase from standard input: %w", err)
		}
	}
	one[0] = 0
	k.fromStdin = buf
	return nil
}

// Clear clears the keys kept.
func (k *Keys) Clear() {
	clear(k.fromStdin)
	for _, p := range k.prompted {
		clear(p)
	}
	k.prompted = nil
}

// terminalPrompt asks on /dev/tty, without echo; ErrNoKey when there is
// no terminal.
func terminalPrompt(prompt string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, ErrNoKey
	}
	defer tty.Close()
	if !term.IsTerminal(int(tty.Fd())) {
		return nil, ErrNoKey
	}
	fmt.Fprint(tty, prompt)
	p, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("read the passphrase: %w", err)
	}
	return p, nil
}
