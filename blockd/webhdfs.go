package blockd

import (
	"net/http"

	"cairn"
	"cairn/client"
	"cairn/trust"
	"cairn/webhdfs"
)

// WebHDFS's datanode side at the blockd's HTTP port (package webhdfs,
// DataNode mode): OPEN, CREATE, APPEND and GETFILECHECKSUM, which metad
// redirects here. Each request gets its own client of the cluster,
// acting as the caller: on a secure cluster by the delegation token
// metad's redirect carries (metad checks it at every call; this blockd's
// certificate only carries the connection), on an insecure one as its
// user.name. The bytes go through the client library: reads verified
// chunk by chunk, local replicas first; writes through a pipeline.
// Given a metad group's members (--metad LIST), each request's client
// follows the leader, starting at the member the last one found leading
// (one client.LeaderHint for the handler), so a redirect the old leader
// gave is served by the new one, which accepts its delegation token (the
// token's record is replicated; the CA that signs it is every member's).

// webhdfsHandler serves /webhdfs/v1/; secure: a delegation token is
// required, a certificate alone does not name a user this blockd may
// speak for.
func (d *Blockd) webhdfsHandler(checksum webhdfs.ChecksumFunc) http.Handler {
	secure := d.creds != nil
	leader := client.NewLeaderHint()
	return &webhdfs.Handler{
		Mode: webhdfs.DataNode, Log: d.log.Named("webhdfs"), NameNodeID: d.cfg.MetadAddr, Checksum: checksum,
		BodyTimeout: d.cfg.IdleTimeout,
		Session: func(r *http.Request, q *webhdfs.Request) (*webhdfs.Session, error) {
			opts := client.Options{Logger: d.log.Named("webhdfs-client"), Leader: leader}
			user := ""
			if secure {
				if r.TLS == nil {
					return nil, &webhdfs.RemoteError{Status: http.StatusUnauthorized, Exception: "SecurityException",
						JavaClass: "java.lang.SecurityException", Message: "this port needs TLS"}
				}
				tok := trust.DelegationTokenOf(r)
				if tok == "" {
					return nil, &webhdfs.RemoteError{Status: http.StatusUnauthorized, Exception: "SecurityException",
						JavaClass: "java.lang.SecurityException", Message: "a blockd's WebHDFS needs a delegation token (delegation=TOKEN): go through metad's redirect, which adds one"}
				}
				opts.Creds, opts.Delegation = d.creds, tok
				if t, _, _, err := trust.ParseDelegationToken(tok); err == nil {
					user = t.Owner
				}
			} else {
				c, err := webhdfs.CallerOf(r, q, false)
				if err != nil {
					return nil, err
				}
				user = c.User
				opts.Insecure, opts.Identity = true, cairn.Identity{User: c.User}
			}
			cl, err := client.Dial(d.cfg.MetadAddr, opts)
			if err != nil {
				return nil, err
			}
			if secure {
				if err := webhdfs.CheckToken(r.Context(), cl.NS); err != nil {
					_ = cl.Close()
					return nil, err
				}
			}
			return &webhdfs.Session{Ctx: r.Context(), NS: cl.NS, Client: cl, User: user, Close: func() { _ = cl.Close() }}, nil
		},
	}
}
