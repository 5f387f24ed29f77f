package metad

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"cairn"
	"cairn/blocktoken"
)

// TestBlockKeysSurviveRestart: metad keeps its block token keys in
// Pebble: a token it signed before a restart still checks against the
// keys it hands blockds after, and the store with its "t" keys is CLEAN.
func TestBlockKeysSurviveRestart(t *testing.T) {
	clock := newFakeClock()
	dir := filepath.Join(t.TempDir(), "meta")
	m := openCfg(t, Config{Dir: dir, Clock: clock})
	ctx := context.Background()
	reg, err := m.Register(ctx, cairn.Registration{Node: cairn.Node{StorageID: "DS-1", DataAddr: "127.0.0.1:1"}})
	if err != nil || len(reg.Keys) < 2 {
		t.Fatalf("register: %d keys, %v; want the current and the next", len(reg.Keys), err)
	}
	if _, err := m.Create(ctx, "/f", cairn.CreateOptions{Client: "c", Replication: 1}); err != nil {
		t.Fatal(err)
	}
	lb, err := m.AddBlock(ctx, cairn.WriterRef{Path: "/f", Client: "c"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if r, err := Check(dir); err != nil || !r.Clean() {
		t.Fatalf("check of a store with block token keys: %v %v", r.Problems, err)
	}

	m = openCfg(t, Config{Dir: dir, Clock: clock})
	reg, err = m.Register(ctx, cairn.Registration{Node: cairn.Node{StorageID: "DS-1", DataAddr: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	var ks blocktoken.KeySet
	ks.Update(reg.Keys)
	want := blocktoken.Want{Block: lb.ID, Stamps: []cairn.GenStamp{lb.GenStamp}, Mode: blocktoken.Write}
	if _, err := ks.Check(lb.Token, clock.Now(), want); err != nil {
		t.Errorf("a token from before the restart against the keys after it: %v", err)
	}
	cmds, err := m.Heartbeat(ctx, cairn.Heartbeat{StorageID: "DS-1"})
	if err != nil || len(cmds) == 0 || cmds[0].Kind != cairn.CmdKeys || len(cmds[0].Keys) != len(reg.Keys) {
		t.Fatalf("heartbeat after the restart: %+v %v, want the keys first", cmds, err)
	}
	clock.Add(blocktoken.DefaultLifetime + time.Second)
	if _, err := ks.Check(lb.Token, clock.Now(), want); cairn.KindOf(err) != cairn.KindAccess {
		t.Errorf("a token past its lifetime: %v, want refused", err)
	}
}

// TestPipelineTokenSpansTheStamps: UpdateBlockForPipeline's token allows
// the copy from the stamp metad records and the new pipeline at the new
// stamp, and nothing past it.
func TestPipelineTokenSpansTheStamps(t *testing.T) {
	m := openCfg(t, Config{})
	ctx := context.Background()
	reg, err := m.Register(ctx, cairn.Registration{Node: cairn.Node{StorageID: "DS-1", DataAddr: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Heartbeat(ctx, cairn.Heartbeat{StorageID: "DS-1", Capacity: 1 << 40, Remaining: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, "/f", cairn.CreateOptions{Client: "c", Replication: 1}); err != nil {
		t.Fatal(err)
	}
	w := cairn.WriterRef{Path: "/f", Client: "c"}
	lb, err := m.AddBlock(ctx, w, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	up, err := m.UpdateBlockForPipeline(ctx, w, lb.Block)
	if err != nil {
		t.Fatal(err)
	}
	var ks blocktoken.KeySet
	ks.Update(reg.Keys)
	now := time.Now()
	for _, c := range []struct {
		stamps []cairn.GenStamp
		mode   blocktoken.Mode
		ok     bool
	}{
		{[]cairn.GenStamp{lb.GenStamp, up.GenStamp}, blocktoken.Copy, true},
		{[]cairn.GenStamp{up.GenStamp}, blocktoken.Replace, true},
		{[]cairn.GenStamp{up.GenStamp}, blocktoken.Write, true},
		{[]cairn.GenStamp{up.GenStamp + 1}, blocktoken.Write, false},
		{[]cairn.GenStamp{up.GenStamp}, blocktoken.Recover, false},
	} {
		_, err := ks.Check(up.Token, now, blocktoken.Want{Block: lb.ID, Stamps: c.stamps, Mode: c.mode})
		if (err == nil) != c.ok {
			t.Errorf("%v at %v: %v, want ok=%v", c.mode, c.stamps, err, c.ok)
		}
	}
}
