package metad

import (
	"context"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"cairn"
	"cairn/trust"
	"cairn/webhdfs"
)

// WebHDFS at metad's HTTP port (package webhdfs, NameNode mode): the
// metadata operations answered here as the caller, OPEN, CREATE, APPEND
// and GETFILECHECKSUM redirected to a blockd's HTTP port with a
// delegation token for the caller (on a secure cluster) or its user.name.

func (m *Metad) webhdfsHandler(secure bool) http.Handler {
	return &webhdfs.Handler{
		Mode: webhdfs.NameNode, Log: m.log.Named("webhdfs"), NameNodeID: m.namespaceID,
		Session: func(r *http.Request, q *webhdfs.Request) (*webhdfs.Session, error) {
			c, err := webhdfs.CallerOf(r, q, secure)
			if err != nil {
				return nil, err
			}
			if err := m.leading("metad.WebHDFS." + q.Op); err != nil {
				return nil, &webhdfs.RemoteError{Status: http.StatusForbidden, Exception: "StandbyException",
					JavaClass: "org.apache.hadoop.ipc.StandbyException", Message: err.Error() + standbyHint}
			}
			id := cairn.Identity{User: c.User, Groups: m.hostGroups(c.User)}
			s := &webhdfs.Session{Ctx: cairn.WithIdentity(r.Context(), id), NS: gatedNS{m}, User: c.User, ByToken: c.ByToken, Token: c.Token}
			if secure && m.ca != nil {
				s.Delegations = m
			}
			return s, nil
		},
		Redirect: func(s *webhdfs.Session, q *webhdfs.Request) (*url.URL, url.Values, error) {
			return m.webhdfsRedirect(s, q, secure)
		},
	}
}

// standbyHint ends a follower's StandbyException (which names the
// leader's RPC address): where a WebHDFS client of a group goes instead.
const standbyHint = "; over WebHDFS ask the leader's HTTP port, or give an HA client (Hadoop's webhdfs:// of a nameservice) " +
	"every member's HTTP address: it fails over on this answer; or go through cairn httpfs --metad with the members' list"

// webhdfsAuth lets through to api, on a secure cluster, a request
// that brings a credential, with its peer in the context as
// trust.RequireCredential puts it (a certificate first, then a
// delegation token, then a UI session); any other is answered a
// SecurityException in JSON, which WebHDFS clients parse.
func (m *Metad) webhdfsAuth(api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			webhdfs.Unauthorized(w, "this port needs TLS and a certificate of the cluster CA or a delegation token")
			return
		}
		p, _, ok := trust.PeerOfState(*r.TLS)
		if tok := trust.DelegationTokenOf(r); !ok && tok != "" {
			var err error
			if p, err = m.delegationPeer(tok); err != nil {
				webhdfs.Unauthorized(w, "delegation token refused: %v", err)
				return
			}
			ok = true
		}
		if !ok {
			if ck, err := r.Cookie(trust.UISessionCookie); err == nil {
				p, ok = m.uiSession(ck.Value)
			}
		}
		if !ok {
			webhdfs.Unauthorized(w, "this cluster needs a client certificate of its CA or a delegation token (delegation=TOKEN)")
			return
		}
		api.ServeHTTP(w, r.WithContext(trust.WithPeer(r.Context(), p)))
	})
}

// webhdfsRedirect picks the blockd a data operation goes to: one holding
// the file's first block for a read, a live one for a write.
func (m *Metad) webhdfsRedirect(s *webhdfs.Session, q *webhdfs.Request, secure bool) (*url.URL, url.Values, error) {
	const op = "metad.webhdfs"
	var addr string
	if q.Op == "OPEN" || q.Op == "GETFILECHECKSUM" {
		fb, err := m.BlockLocations(s.Ctx, cairn.FileRef{Path: q.Path})
		if err != nil {
			return nil, nil, err
		}
		if len(fb.Blocks) > 0 {
			for _, n := range fb.Blocks[0].Locations {
				if n.HTTPAddr != "" {
					addr = n.HTTPAddr
					break
				}
			}
		}
	}
	if addr == "" {
		rep, err := m.Report(s.Ctx)
		if err != nil {
			return nil, nil, err
		}
		var live []string
		for _, n := range rep.Nodes {
			if n.Live && n.HTTPAddr != "" && n.AdminState == cairn.AdminNormal {
				live = append(live, n.HTTPAddr)
			}
		}
		if len(live) == 0 {
			return nil, nil, cairn.E(op, cairn.KindNoSpace, q.Path, "no live blockd serves HTTP")
		}
		addr = live[rand.IntN(len(live))]
	}
	u := &url.URL{Scheme: "http", Host: addr}
	extra := url.Values{}
	if !secure {
		extra.Set("user.name", s.User)
		return u, extra, nil
	}
	u.Scheme = "https"
	if s.ByToken {
		extra.Set(trust.DelegationParam, s.Token)
	} else {
		tok, err := m.redirectToken(s.Ctx, s.User)
		if err != nil {
			return nil, nil, err
		}
		extra.Set(trust.DelegationParam, tok)
	}
	return u, extra, nil
}

// redirectTokenMargin: a redirect's token is issued again once less than
// this is left of its life, so the blockd's calls never outlive it.
const redirectTokenMargin = time.Hour

// redirectToken is a delegation token for user to carry in a redirect
// to a blockd (HDFS puts one in the datanode URL): the last one issued
// for user while it works for redirectTokenMargin more, else a new one,
// so a redirect costs a synced write once a renew interval, not each
// time.
func (m *Metad) redirectToken(ctx context.Context, user string) (string, error) {
	now := m.clock.Now()
	if v, ok := m.redirectTokens.Load(user); ok {
		tok := v.(string)
		if _, exp, err := m.delegationRecord(tok, now); err == nil && exp.Sub(now) > redirectTokenMargin {
			return tok, nil
		}
	}
	tok, _, _, err := m.GetDelegationToken(ctx, "")
	if err != nil {
		return "", err
	}
	m.redirectTokens.Store(user, tok)
	return tok, nil
}

// gatedNS is metad's namespace for in-process callers (WebHDFS): its
// mutations are refused in safe mode, as safeModeGate refuses them over
// RPC.
type gatedNS struct{ *Metad }

func (g gatedNS) Mkdirs(ctx context.Context, path string, perm fs.FileMode) error {
	if err := g.refusal("metad.Mkdirs", path); err != nil {
		return err
	}
	return g.Metad.Mkdirs(ctx, path, perm)
}

func (g gatedNS) Rename(ctx context.Context, src, dst string) error {
	if err := g.refusal("metad.Rename", src); err != nil {
		return err
	}
	return g.Metad.Rename(ctx, src, dst)
}

func (g gatedNS) Delete(ctx context.Context, path string, recursive bool) error {
	if err := g.refusal("metad.Delete", path); err != nil {
		return err
	}
	return g.Metad.Delete(ctx, path, recursive)
}

func (g gatedNS) SetAttr(ctx context.Context, path string, a cairn.Attr) (cairn.FileInfo, error) {
	if err := g.refusal("metad.SetAttr", path); err != nil {
		return cairn.FileInfo{}, err
	}
	return g.Metad.SetAttr(ctx, path, a)
}

func (g gatedNS) Symlink(ctx context.Context, target, path string) error {
	if err := g.refusal("metad.Symlink", path); err != nil {
		return err
	}
	return g.Metad.Symlink(ctx, target, path)
}

func (g gatedNS) SetXattr(ctx context.Context, path, name string, value []byte, flags cairn.XattrFlags) error {
	if err := g.refusal("metad.SetXattr", path); err != nil {
		return err
	}
	return g.Metad.SetXattr(ctx, path, name, value, flags)
}

func (g gatedNS) RemoveXattr(ctx context.Context, path, name string) error {
	if err := g.refusal("metad.RemoveXattr", path); err != nil {
		return err
	}
	return g.Metad.RemoveXattr(ctx, path, name)
}

func (g gatedNS) Concat(ctx context.Context, target string, sources []string) error {
	if err := g.refusal("metad.Concat", target); err != nil {
		return err
	}
	return g.Metad.Concat(ctx, target, sources)
}

// leading refuses a WebHDFS call on a member of a metad group that does not
// lead, as the RPC port's leader gate does (raftnode.go): its store may be
// behind the leader's, so it serves no read (a stale one), and it proposes
// no change. The answer (StandbyException, as an HDFS standby NameNode's)
// names the leader. A single metad always leads.
func (m *Metad) leading(op string) error {
	rep := m.rep
	if rep == nil {
		return nil
	}
	if !rep.ready.Load() || rep.confirmLead() != nil {
		return rep.notLeader(op)
	}
	return nil
}
