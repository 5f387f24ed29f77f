package blockd

import (
	"context"
	"strings"
	"time"

	"cairn"
	"cairn/webui"
)

// uiSource is the blockd's state as its status page (package webui) shows
// it. node is the blockd's identity and addresses as known when its HTTP
// port opened (the HTTP address itself is set later, and not shown).
type uiSource struct {
	d       *Blockd
	node    cairn.Node
	started time.Time
}

var _ webui.BlockdSource = uiSource{}

func (s uiSource) BlockdStatus(context.Context) webui.BlockdStatus {
	d := s.d
	st := webui.BlockdStatus{StorageID: s.node.StorageID, NamespaceID: d.store.NamespaceID(), DataAddr: s.node.DataAddr, Rack: s.node.Rack,
		Metad: d.cfg.MetadAddr, Version: webui.BuildVersion(), Started: s.started, Active: d.active.Load(), Volumes: d.store.volumeStatus()}
	for _, v := range st.Volumes {
		st.Replicas += v.Replicas
	}
	if sc := d.scan; sc != nil {
		st.Scanner = &webui.ScannerStatus{Period: sc.cfg.Period, Rate: sc.cfg.Rate, Verified: sc.verified.Load(), Bytes: sc.bytes.Load(), Bad: sc.bad.Load()}
	}
	return st
}

// volumeStatus describes every data directory: those opened, in the
// order given, then those that failed at start, each failed one with why.
func (vs *Volumes) volumeStatus() []webui.VolumeStatus {
	failed := vs.Failed()
	out := make([]webui.VolumeStatus, 0, len(vs.vols)+len(failed))
	for _, v := range vs.vols {
		s := webui.VolumeStatus{Dir: v.dir}
		if v.out.Load() {
			s.Failed = "out of service"
			for i, f := range failed {
				if why, ok := strings.CutPrefix(f, v.dir+": "); ok {
					s.Failed, failed[i] = why, ""
				}
			}
			out = append(out, s)
			continue
		}
		c, u, r := v.store.Usage()
		s.Capacity, s.Used, s.Remaining = max(0, c-vs.reserved), u, max(0, r-vs.reserved)
		s.Replicas = v.store.count()
		out = append(out, s)
	}
	// Failed at start: never opened, known by the "DIR: reason" line.
	for _, f := range failed {
		if f != "" {
			dir, why, _ := strings.Cut(f, ": ")
			out = append(out, webui.VolumeStatus{Dir: dir, Failed: why})
		}
	}
	return out
}

// count is how many replicas the store holds, finalized or being written.
func (s *Store) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.replicas) + len(s.rbw)
}
