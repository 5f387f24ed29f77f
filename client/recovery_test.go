package client

import (
	"testing"
	"time"

	"cairn"
)

func TestExclusionsExpire(t *testing.T) {
	w := &Writer{}
	a, b, h := cairn.Node{StorageID: "a"}, cairn.Node{StorageID: "b"}, cairn.Node{StorageID: "h"}
	w.exclude(a, false)
	w.exclude(b, false)
	w.exclude(h, true)
	if got := w.exclusions(true); len(got) != 3 {
		t.Fatalf("exclusions = %v, want a, b and h", got)
	}
	if got := w.exclusions(false); len(got) != 1 || got[0].StorageID != "h" {
		t.Fatalf("exclusions of hung nodes = %v, want h", got)
	}
	w.excluded[0].until = time.Now().Add(-time.Second) // a expired
	got := w.exclusions(true)
	if len(got) != 2 || got[0].StorageID != "b" || got[1].StorageID != "h" {
		t.Fatalf("after a expired: %v, want b and h", got)
	}
	w.exclude(b, true) // b failed again, hanging this time
	if got := w.exclusions(false); len(got) != 2 {
		t.Fatalf("exclusions of hung nodes = %v, want b and h", got)
	}
}

func TestReplaceNodePolicy(t *testing.T) {
	for _, c := range []struct {
		repl, nodes       int
		flushed, appended bool
		want              bool
	}{
		{3, 3, false, false, false},
		{3, 2, false, false, false}, // DEFAULT: 2 > 3/2
		{3, 2, true, false, true},   // hflushed
		{3, 2, false, true, true},   // appended
		{3, 1, false, false, true},
		{2, 1, false, false, true}, // one node left: beyond HDFS's DEFAULT
		{1, 1, false, false, false},
		{5, 2, false, false, true},
		{5, 3, false, false, false},
	} {
		w := &Writer{fi: cairn.FileInfo{Replication: c.repl}, flushed: c.flushed, appended: c.appended,
			lb: &cairn.LocatedBlock{Locations: make([]cairn.Node, c.nodes)}}
		if got := w.replaceNode(); got != c.want {
			t.Errorf("replication %d, %d nodes, flushed %v, appended %v: replaceNode = %v, want %v",
				c.repl, c.nodes, c.flushed, c.appended, got, c.want)
		}
	}
}

func TestLostErrKind(t *testing.T) {
	full := failure{node: "n1", kind: cairn.KindNoSpace, why: "its disk is full"}
	broken := failure{node: "n2", kind: cairn.KindIO, why: "connection reset"}
	hung := failure{node: "n3", kind: cairn.KindIO, why: "no ack within 2s", hung: true}
	for _, c := range []struct {
		failures []failure
		want     cairn.Kind
	}{
		{[]failure{full, full}, cairn.KindNoSpace},
		// A full blockd dropping out breaks its neighbours' connections.
		{[]failure{full, broken}, cairn.KindNoSpace},
		{[]failure{broken, full}, cairn.KindNoSpace},
		{[]failure{full, hung}, cairn.KindIO},
		{[]failure{broken}, cairn.KindIO},
		{nil, cairn.KindIO},
	} {
		w := &Writer{path: "/f", failures: c.failures}
		err := w.lostErr(cairn.Block{ID: 1}, "every blockd of the pipeline failed", nil)
		if k := cairn.KindOf(err); k != c.want {
			t.Errorf("failures %v: kind %v, want %v (%v)", c.failures, k, c.want, err)
		}
	}
}
