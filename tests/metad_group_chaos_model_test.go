package tests

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// chaosModel is what one worker of TestMetadGroupChaos has done in its
// own directory, which no one else touches: every name it made, what
// each file holds, and the names removed. An op that returned success is
// acknowledged, and the model takes its effect: it must hold at the end.
// An op that failed may or may not have happened: the names it could
// have changed are marked uncertain, and the worker never touches them
// (nor anything under them) again, nor are they checked; new names are
// never reused, so the model of every other name stays exact.
type chaosModel struct {
	root    string                 // the worker's directory, "/chaos/w3"
	entries map[string]*chaosEntry // by path, root included
	// gone are the names an acknowledged delete or rename removed, with
	// when: none may exist at the end.
	gone map[string]time.Time
	next int // the number of the next new name
}

// chaosEntry is one name.
type chaosEntry struct {
	dir       bool
	ino       *chaosInode // a file's contents, shared by its hard links
	uncertain bool        // a failed op may have made, moved or removed it
	at        time.Time   // when the op that made or moved it was acknowledged
}

// chaosInode is a file: its bytes, and whether they are known.
type chaosInode struct {
	data      []byte
	uncertain bool // an append to it failed: its length is not known
	// viaMount: made through the mount, in the worker's directory, and
	// only ever appended to through the mount (whose attribute cache
	// must not see the file change behind its back).
	viaMount bool
	at       time.Time // when the last change of its bytes was acknowledged
}

func newChaosModel(root string) *chaosModel {
	return &chaosModel{root: root, entries: map[string]*chaosEntry{root: {dir: true}}, gone: map[string]time.Time{}}
}

// under reports whether p is dir or inside it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// parent is p's directory.
func parent(p string) string { return p[:strings.LastIndexByte(p, '/')] }

// depth is how many names p lies below the worker's directory.
func (m *chaosModel) depth(p string) int {
	return strings.Count(strings.TrimPrefix(p, m.root), "/")
}

// newName returns a name in dir never used before.
func (m *chaosModel) newName(dir, prefix string) string {
	m.next++
	return dir + "/" + prefix + strconv.Itoa(m.next)
}

// certain reports whether p is known exactly: p and every directory up
// to the worker's are in the model and no failed op could have touched
// them.
func (m *chaosModel) certain(p string) bool {
	for q := p; ; q = parent(q) {
		e := m.entries[q]
		if e == nil || e.uncertain || (e.ino != nil && e.ino.uncertain) {
			return false
		}
		if q == m.root {
			return true
		}
	}
}

// pick returns a certain name that ok accepts, at random, or "".
func (m *chaosModel) pick(rng *rand.Rand, ok func(p string, e *chaosEntry) bool) string {
	var ps []string
	for p, e := range m.entries {
		if m.certain(p) && ok(p, e) {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return ""
	}
	slices.Sort(ps) // map order is random; the seed's is not
	return ps[rng.IntN(len(ps))]
}

// pickDir returns a certain directory at most maxDepth below the worker's.
func (m *chaosModel) pickDir(rng *rand.Rand, maxDepth int) string {
	return m.pick(rng, func(p string, e *chaosEntry) bool { return e.dir && m.depth(p) <= maxDepth })
}

// pickFile returns a certain file the client library may change (not
// one made through the mount), or "".
func (m *chaosModel) pickFile(rng *rand.Rand) string {
	return m.pick(rng, func(p string, e *chaosEntry) bool { return !e.dir && !e.ino.viaMount })
}

func (m *chaosModel) addFile(p string, data []byte, viaMount bool) {
	now := time.Now()
	m.entries[p] = &chaosEntry{ino: &chaosInode{data: data, viaMount: viaMount, at: now}, at: now}
}

func (m *chaosModel) addDir(p string) { m.entries[p] = &chaosEntry{dir: true, at: time.Now()} }

func (m *chaosModel) appendTo(p string, data []byte) {
	ino := m.entries[p].ino
	ino.data = append(ino.data, data...)
	ino.at = time.Now()
}

func (m *chaosModel) link(src, dst string) {
	m.entries[dst] = &chaosEntry{ino: m.entries[src].ino, at: time.Now()}
}

// when says when p's last acknowledged change was, from start, for a
// report of what was lost: the fault before it is in the timeline.
func (m *chaosModel) when(p string, start time.Time) string {
	var at time.Time
	if e := m.entries[p]; e != nil {
		at = e.at
		if e.ino != nil && e.ino.at.After(at) {
			at = e.ino.at
		}
	} else {
		at = m.gone[p]
	}
	if at.IsZero() {
		return ""
	}
	return fmt.Sprintf(" [acknowledged at %v]", at.Sub(start).Round(time.Millisecond))
}

// rename moves src, and for a directory everything under it, to dst,
// replacing a file there.
func (m *chaosModel) rename(src, dst string) {
	now := time.Now()
	moved := map[string]*chaosEntry{}
	for p, e := range m.entries {
		if under(p, src) {
			moved[dst+strings.TrimPrefix(p, src)] = e
			delete(m.entries, p)
			m.gone[p] = now
		}
	}
	for p, e := range moved {
		e.at = now
		m.entries[p] = e
	}
}

// remove deletes p and everything under it.
func (m *chaosModel) remove(p string) {
	now := time.Now()
	for q := range m.entries {
		if under(q, p) {
			delete(m.entries, q)
			m.gone[q] = now
		}
	}
}

// uncertain marks the names a failed op could have changed.
func (m *chaosModel) uncertain(ps ...string) {
	for _, p := range ps {
		if e := m.entries[p]; e != nil {
			e.uncertain = true
		} else {
			m.entries[p] = &chaosEntry{uncertain: true}
		}
	}
}

// appendFailed marks a file whose append failed: every name of it.
func (m *chaosModel) appendFailed(p string) { m.entries[p].ino.uncertain = true }

// counts returns how many names are certain and how many are not.
func (m *chaosModel) counts() (certain, uncertain int) {
	for p := range m.entries {
		if m.certain(p) {
			certain++
		} else {
			uncertain++
		}
	}
	return certain, uncertain
}
