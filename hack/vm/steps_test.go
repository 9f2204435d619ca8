package vm

import "testing"

func TestSteps(t *testing.T) {
	out := "boot noise\n@@@ stdout a\nhello\n@@@ stderr a\nwarning: x\n@@@ exit a 3\nbetween\n@@@ stdout b\npartial\n"
	s := Steps(out)
	if a := s["a"]; a.Stdout != "hello\n" || a.Stderr != "warning: x\n" || a.ExitStatus != 3 {
		t.Errorf("a = %+v", a)
	}
	if b := s["b"]; b.Stdout != "partial\n" || b.ExitStatus != -1 {
		t.Errorf("b = %+v", b)
	}
	if _, ok := s["between"]; ok || len(s) != 2 {
		t.Errorf("steps %v", s)
	}
}
