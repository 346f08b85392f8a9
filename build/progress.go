package build

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress prints a build as `docker build --progress=plain` does: each
// step "#N [stage k/n] INSTRUCTION", its output lines prefixed "#N", and
// "#N DONE 0.1s" or "#N ERROR: ...".
type progress struct {
	mu sync.Mutex
	w  io.Writer
	n  int
}

// step is one numbered step of the display.
type step struct {
	p     *progress
	n     int
	start time.Time
}

func (p *progress) printf(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, a...)
}

// start numbers and prints a new step.
func (p *progress) start(name string) *step {
	p.mu.Lock()
	p.n++
	s := &step{p: p, n: p.n, start: time.Now()}
	p.mu.Unlock()
	p.printf("#%d %s\n", s.n, name)
	return s
}

func (s *step) logf(format string, a ...any) {
	s.p.printf("#%d %s\n", s.n, fmt.Sprintf(format, a...))
}

// done prints how the step ended.
func (s *step) done(err error) {
	d := time.Since(s.start).Seconds()
	if err != nil {
		s.p.printf("#%d ERROR: %v\n", s.n, err)
		return
	}
	s.p.printf("#%d DONE %.1fs\n", s.n, d)
}

// cached says the step came from the cache, as docker build does.
func (s *step) cached() { s.p.printf("#%d CACHED\n", s.n) }

// tailLines is how much of a failing RUN's output its error repeats.
const tailLines = 10

// output is the writer a RUN's stdout and stderr go to: whole lines are
// printed under the step's number with the time since it started, and the
// last lines are kept for the error message.
type output struct {
	s    *step
	mu   sync.Mutex
	buf  []byte
	tail []string
}

func (s *step) output() *output { return &output{s: s} }

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, b...)
	for {
		i := bytes.IndexByte(o.buf, '\n')
		if i < 0 {
			break
		}
		o.line(string(o.buf[:i]))
		o.buf = o.buf[i+1:]
	}
	// A line without its newline is bounded like any other.
	if len(o.buf) > 64<<10 {
		o.line(string(o.buf))
		o.buf = o.buf[:0]
	}
	return len(b), nil
}

func (o *output) line(l string) {
	l = strings.TrimRight(l, "\r")
	o.s.p.printf("#%d %.3f %s\n", o.s.n, time.Since(o.s.start).Seconds(), l)
	o.tail = append(o.tail, l)
	if len(o.tail) > tailLines {
		o.tail = o.tail[1:]
	}
}

// flush prints a last line that had no newline, and returns the tail.
func (o *output) flush() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.buf) > 0 {
		o.line(string(o.buf))
		o.buf = nil
	}
	return o.tail
}
