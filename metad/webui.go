package metad

import (
	"context"
	"time"

	"cairn"
	"cairn/trust"
	"cairn/webui"
)

// The web UI (package webui) on metad's HTTP port reads metad's state in
// process through uiSource. Its namespace pages run as the request's
// identity: an admin's UI session or certificate as that admin (a
// superuser), a user's certificate or delegation token as that user
// (with the host's groups), any other certificate (a mount's, a blockd's)
// as nobody; on an --insecure cluster, where the port asks for nothing,
// as Hadoop's static web user, dr.who.
type uiSource struct {
	m       *Metad
	started time.Time
}

var _ webui.Source = uiSource{}

// uiStaticUser is who the UI's requests run as on an --insecure cluster
// (Hadoop's hadoop.http.staticuser.user).
const uiStaticUser = "dr.who"

// as returns ctx with the identity the UI's request runs as.
func (s uiSource) as(ctx context.Context) context.Context {
	p, ok := trust.PeerFrom(ctx)
	switch {
	case !ok:
		return cairn.WithIdentity(ctx, cairn.Identity{User: uiStaticUser})
	case p.Role == trust.RoleAdmin:
		return cairn.WithIdentity(ctx, cairn.Identity{User: p.Name})
	case p.Role == trust.RoleUser:
		return cairn.WithIdentity(ctx, cairn.Identity{User: p.Name, Groups: s.m.hostGroups(p.Name)})
	}
	return cairn.WithIdentity(ctx, cairn.Identity{User: anonymous})
}

func (s uiSource) Status(ctx context.Context) (webui.Status, error) {
	sm, err := s.m.SafeMode(ctx, cairn.SafeModeGet)
	if err != nil {
		return webui.Status{}, err
	}
	st, err := s.m.Statfs(ctx)
	if err != nil {
		return webui.Status{}, err
	}
	h := s.m.health.load()
	return webui.Status{NamespaceID: s.m.namespaceID, Version: webui.BuildVersion(), Started: s.started,
		SafeMode: sm, Stats: st,
		Health: webui.BlockHealth{UnderReplicated: int64(h.underReplicated()), Corrupt: int64(h.corrupt), Missing: int64(h.missing), Checked: h.at}}, nil
}

func (s uiSource) Report(ctx context.Context) (cairn.ClusterReport, error) { return s.m.Report(ctx) }

func (s uiSource) Stat(ctx context.Context, path string) (cairn.FileInfo, error) {
	return s.m.Stat(s.as(ctx), path)
}

func (s uiSource) List(ctx context.Context, path, after string, limit int) ([]cairn.FileInfo, bool, error) {
	return s.m.List(s.as(ctx), path, after, limit)
}

func (s uiSource) BlockLocations(ctx context.Context, path string) (cairn.FileBlocks, error) {
	return s.m.BlockLocations(s.as(ctx), cairn.FileRef{Path: path})
}
