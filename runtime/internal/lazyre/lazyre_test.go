package lazyre

import "testing"

func TestNewCompilesOnceOnFirstUse(t *testing.T) {
	re := New(`^a+$`)
	if !re().MatchString("aaa") || re().MatchString("b") {
		t.Fatal("wrong matches")
	}
	if re() != re() {
		t.Fatal("compiled more than once")
	}
}

func TestNewPanicsOnUseOfABadExpression(t *testing.T) {
	re := New(`(`) // no panic yet
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a bad expression")
		}
	}()
	re()
}
