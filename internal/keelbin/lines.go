package keelbin

import (
	"bytes"
	"io"
	"sync"
)

// LineWriter copies a child process's output to W and hands every complete
// line, without its newline, to Line, in order and one at a time: tests use
// it to keep a server's log and watch it for readiness, races and panics.
type LineWriter struct {
	W    io.Writer
	Line func(string)

	mu      sync.Mutex
	partial []byte
}

// Write implements io.Writer. A write error of W is ignored: the lines are
// still handed on.
func (w *LineWriter) Write(p []byte) (int, error) {
	w.W.Write(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.Line(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	w.partial = append([]byte(nil), w.partial...)
	return len(p), nil
}
