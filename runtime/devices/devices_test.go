package devices

import "testing"

// TestCharNode: a control device is given as the host has it; anything
// else is refused.
func TestCharNode(t *testing.T) {
	d, err := CharNode("/dev/null")
	if err != nil || d.Type != "c" || d.Major != 1 || d.Minor != 3 || *d.FileMode != 0o600 {
		t.Errorf("/dev/null: %+v %v", d, err)
	}
	if _, err := CharNode("/etc/hostname"); err == nil {
		t.Error("a file taken for a device")
	}
}
