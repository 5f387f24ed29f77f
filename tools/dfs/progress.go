package dfs

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress draws a copy's progress bar on a terminal, rewritten in place
// with \r at most every progressEvery:
//
//	put: big.iso  42% [=========>              ] 27.5 M/65.0 M
//
// nil when stderr is not a terminal: nothing is drawn when piped.
type progress struct {
	w     io.Writer
	name  string
	total int64
	done  int64
	last  time.Time
	drawn bool
}

const (
	progressEvery = 100 * time.Millisecond
	barWidth      = 30
)

// newProgress returns a progress bar for a copy of total bytes named
// name, or nil when stderr is no terminal.
func (s *shell) newProgress(name string, total int64) *progress {
	if !s.tty {
		return nil
	}
	return &progress{w: s.errw, name: s.verb + ": " + name, total: total}
}

// reader counts what r yields into p.
func (p *progress) reader(r io.Reader) io.Reader {
	if p == nil {
		return r
	}
	return &progressReader{r: r, p: p}
}

type progressReader struct {
	r io.Reader
	p *progress
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.p.add(int64(n))
	return n, err
}

func (p *progress) add(n int64) {
	p.done += n
	if now := time.Now(); now.Sub(p.last) >= progressEvery {
		p.last = now
		p.draw()
	}
}

// line is the bar's text for done of total bytes.
func (p *progress) line() string {
	pct := 100
	if p.total > 0 {
		pct = int(min(p.done*100/p.total, 100))
	}
	fill := pct * barWidth / 100
	bar := strings.Repeat("=", fill)
	if fill < barWidth {
		bar += ">" + strings.Repeat(" ", barWidth-fill-1)
	}
	return fmt.Sprintf("%s %3d%% [%s] %s/%s", p.name, pct, bar, humanSize(p.done), humanSize(p.total))
}

func (p *progress) draw() {
	fmt.Fprintf(p.w, "\r%s\x1b[K", p.line())
	p.drawn = true
}

// finish draws the bar complete and ends its line.
func (p *progress) finish() {
	if p == nil {
		return
	}
	p.draw()
	fmt.Fprintln(p.w)
}
