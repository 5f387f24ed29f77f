package webhdfs

import (
	"context"
	"net/http"

	"cairn"
	"cairn/trust"
)

// AnonymousUser is who a request without user.name is on an insecure
// cluster (Hadoop's dr.who).
const AnonymousUser = "dr.who"

// Caller is who a request acts as.
type Caller struct {
	// User is the user the request's calls run as.
	User string
	// Peer is the credential it brought (zero on an insecure cluster):
	// a certificate's holder, or the user a delegation token names.
	Peer trust.Peer
	// Token is the delegation token it brought, "" if none; ByToken says
	// the token, not a certificate, authenticated it.
	Token   string
	ByToken bool
}

// CallerOf says who r (parsed as q) acts as. Insecure: Hadoop's simple
// authentication, doas= or user.name= (else AnonymousUser). Secure: the
// peer the authentication in front of the handler put in r's context
// (trust.WithPeer): a user certificate or a delegation token is that
// user; an admin or a mount certificate may name the user it speaks for
// with doas= or user.name= (a mount must).
func CallerOf(r *http.Request, q *Request, secure bool) (Caller, error) {
	named := q.Param("doas")
	if named == "" {
		named = q.Param("user.name")
	}
	if named != "" {
		if err := trust.ValidName(named); err != nil {
			return Caller{}, excIllegal("Invalid value for webhdfs parameter \"user.name\": %v", err)
		}
	}
	tok := trust.DelegationTokenOf(r)
	if !secure {
		if named == "" {
			named = AnonymousUser
		}
		return Caller{User: named}, nil
	}
	p, ok := trust.PeerFrom(r.Context())
	if !ok {
		return Caller{}, excSecurity("this cluster needs a client certificate or a delegation token (delegation=TOKEN)")
	}
	_, _, byCert := hasCert(r)
	c := Caller{Peer: p, Token: tok, ByToken: tok != "" && !byCert}
	switch p.Role {
	case trust.RoleUser:
		if named != "" && named != p.Name {
			return Caller{}, excAccess("%s may act as %s only, not %s", p, p.Name, named)
		}
		c.User = p.Name
	case trust.RoleAdmin:
		c.User = p.Name
		if named != "" {
			c.User = named
		}
	case trust.RoleMount:
		if named == "" {
			return Caller{}, excSecurity("%s speaks for its host's users: name one with doas=USER", p)
		}
		c.User = named
	default:
		return Caller{}, excAccess("%s may not use WebHDFS", p)
	}
	return c, nil
}

// CheckToken has metad check the delegation token ns's calls run by
// (client.Options.Delegation), before a gateway or a blockd answers
// anything: a refused token is a SecurityException (401).
func CheckToken(ctx context.Context, ns cairn.Namespace) error {
	_, err := ns.Stat(ctx, "/")
	if k := cairn.KindOf(err); k == cairn.KindPermission || k == cairn.KindAccess {
		return excSecurity("delegation token refused: %v", err)
	}
	return err
}

// hasCert returns the verified client certificate's peer of r, if any.
func hasCert(r *http.Request) (trust.Peer, bool, bool) {
	if r.TLS == nil {
		return trust.Peer{}, false, false
	}
	p, _, ok := trust.PeerOfState(*r.TLS)
	return p, true, ok
}
