package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
)

// newLog is the logger the runtime says things to: one line each on
// stderr, "nixrescue: warning: …" for warnings, "nixrescue: hint: …" for
// hints, "nixrescue: …" otherwise; what is only for -v (verbose=true) is
// said only then.
func newLog() *slog.Logger { return slog.New(&lineHandler{w: os.Stderr}) }

// lineHandler writes log records as nixrescue's lines.
type lineHandler struct {
	mu sync.Mutex
	w  io.Writer
}

func (h *lineHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	prefix := ""
	skip := false
	r.Attrs(func(a slog.Attr) bool {
		switch {
		case a.Key == "verbose" && a.Value.Bool():
			skip = !verbose
		case a.Key == "kind":
			prefix = a.Value.String() + ": "
		}
		return true
	})
	if skip {
		return nil
	}
	if r.Level >= slog.LevelWarn {
		prefix = "warning: "
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := fmt.Fprintf(h.w, "nixrescue: %s%s\n", prefix, r.Message)
	return err
}

func (h *lineHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *lineHandler) WithGroup(string) slog.Handler      { return h }
