package fsck

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"cairn/client"
)

const (
	// defaultParallel bounds the replicas verified at once, cluster-wide.
	defaultParallel = 8
	// perNode bounds the replicas one blockd is asked to verify at once:
	// each is a whole replica read from its disk.
	perNode = 2
	// progressEvery bounds how often the progress line is redrawn.
	progressEvery = 200 * time.Millisecond
)

// verify has the blockd of every live replica of files re-read it
// (VERIFY_BLOCK), at most o.Parallel at once and perNode on one blockd. A
// replica found bad no longer counts, its Corrupt saying why; nor does one
// that could not be verified (f.unverified says why).
func (r *Report) verify(ctx context.Context, c *client.Client, files []*fileCheck, o Options) error {
	type task struct {
		f       *fileCheck
		bi, ri  int
		storage string
	}
	var tasks []task
	for _, f := range files {
		f.unverified = map[[2]int]string{}
		for bi, b := range f.fr.Blocks {
			for ri, rep := range b.Replicas {
				if rep.Live {
					tasks = append(tasks, task{f, bi, ri, rep.StorageID})
				}
			}
		}
	}
	par := o.Parallel
	if par <= 0 {
		par = defaultParallel
	}
	var (
		mu       sync.Mutex
		done     int
		bad      int
		lastDraw time.Time
		nodeSem  = map[string]chan struct{}{}
	)
	for _, t := range tasks {
		if nodeSem[t.storage] == nil {
			nodeSem[t.storage] = make(chan struct{}, perNode)
		}
	}
	progress := func(final bool) {
		if o.Progress == nil {
			return
		}
		now := time.Now()
		if !final && now.Sub(lastDraw) < progressEvery {
			return
		}
		lastDraw = now
		fmt.Fprintf(o.Progress, "\rVerifying replicas: %d/%d, %d bad", done, len(tasks), bad)
		if final {
			fmt.Fprintf(o.Progress, "\r%-60s\r", "")
		}
	}
	work := make(chan task)
	var wg sync.WaitGroup
	for range min(par, max(1, len(tasks))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range work {
				sem := nodeSem[t.storage]
				sem <- struct{}{}
				b := &t.f.fr.Blocks[t.bi]
				rep := &b.Replicas[t.ri]
				v, err := c.VerifyReplica(ctx, rep.Node, rep.Block, b.Token)
				<-sem
				mu.Lock()
				done++
				switch {
				case err != nil:
					t.f.unverified[[2]int{t.bi, t.ri}] = err.Error()
					rep.Good = false
				case v.Bad != "":
					rep.Corrupt = "verify: " + v.Bad
					rep.Good = false
					bad++
				}
				progress(false)
				mu.Unlock()
			}
		}()
	}
	for _, t := range tasks {
		if ctx.Err() != nil {
			break
		}
		work <- t
	}
	close(work)
	wg.Wait()
	r.Verified = int64(done)
	progress(true)
	return ctx.Err()
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
