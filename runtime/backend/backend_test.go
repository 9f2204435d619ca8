package backend

import (
	"bytes"
	"testing"
)

// valueWriter is a writer of a type == cannot compare (a slice inside).
type valueWriter struct{ seen []byte }

func (w valueWriter) Write(p []byte) (int, error) { return len(p), nil }

func TestSameWriter(t *testing.T) {
	var a, b bytes.Buffer
	v := valueWriter{}
	cases := []struct {
		name string
		same bool
		fn   func() bool
	}{
		{"one pointer", true, func() bool { return SameWriter(&a, &a) }},
		{"two pointers", false, func() bool { return SameWriter(&a, &b) }},
		{"nil", false, func() bool { return SameWriter(nil, &a) }},
		// `v == v` as io.Writers panics: "comparing uncomparable type".
		{"uncomparable values", false, func() bool { return SameWriter(v, v) }},
	}
	for _, c := range cases {
		if got := c.fn(); got != c.same {
			t.Errorf("%s: %v, want %v", c.name, got, c.same)
		}
	}
}
