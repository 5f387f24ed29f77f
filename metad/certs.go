package metad

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"cairn"
	"cairn/rpc"
	"cairn/trust"
)

// metad's side of the cluster's certificates (package trust): the CA in
// DIR/trust, metad's own certificate (signed at start, kept in memory and
// renewed by itself), join tokens used once (the "j" keys) and
// certificates renewed for their holders.

var _ rpc.TrustService = (*Metad)(nil)

// openTrust loads the cluster CA, creating one when the data directory has
// none (a directory formatted or restored before CAs), and signs metad's
// own certificate.
func (m *Metad) openTrust() error {
	ca, created, err := trust.EnsureCA(filepath.Join(m.cfg.Dir, trust.CADir), m.namespaceID)
	if err != nil {
		return err
	}
	if created {
		m.log.Info("cluster CA created", zap.String("dir", ca.Dir), zap.String("fingerprint", ca.Fingerprint()))
	}
	m.ca = ca
	m.revoked = trust.NewRevoked(filepath.Join(ca.Dir, trust.RevokedFile))
	c, err := m.selfCreds()
	if err != nil {
		return err
	}
	m.self = trust.NewHolder(c)
	return nil
}

// selfCreds signs a new certificate for metad itself.
func (m *Metad) selfCreds() (*trust.Creds, error) {
	key, err := trust.NewKey()
	if err != nil {
		return nil, err
	}
	der, err := m.ca.Issue(key.Public(), trust.Peer{Role: trust.RoleMetad, Name: m.namespaceID}, m.cfg.CertTTL, nil)
	if err != nil {
		return nil, err
	}
	return trust.CredsOf(key, der, m.ca.Cert)
}

// runSelfRenewal renews metad's own certificate as any holder would.
func (m *Metad) runSelfRenewal(ctx context.Context) {
	trust.Renew(ctx, m.self, "", func(_ context.Context, csr []byte) ([]byte, error) {
		r, p, err := trust.ParseCSR(csr)
		if err != nil {
			return nil, err
		}
		return m.ca.Issue(r.PublicKey, p, m.cfg.CertTTL, nil)
	}, m.log.Named("trust"))
}

// ServerCreds is metad's certificate, for its TLS servers.
func (m *Metad) ServerCreds() *trust.Holder { return m.self }

// Revoked is the revocation list metad checks at each handshake.
func (m *Metad) Revoked() *trust.Revoked { return m.revoked }

// Join signs csr for the peer a join token allows, and records the
// token as used, durably, so it works once.
func (m *Metad) Join(ctx context.Context, token string, csr []byte) ([]byte, []byte, error) {
	const op = "metad.Join"
	if m.ca == nil {
		return nil, nil, cairn.E(op, cairn.KindInvalid, "", "this metad runs --insecure: it has no CA")
	}
	jt, err := m.ca.VerifyJoinToken(token, m.clock.Now())
	switch {
	case errors.Is(err, trust.ErrTokenExpired):
		return nil, nil, cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("%v: ask an admin for a new one (cairn admin -join-token --role %s)", err, jt.Role))
	case errors.Is(err, trust.ErrTokenForged):
		return nil, nil, cairn.E(op, cairn.KindPermission, "", "the join token is not signed by this cluster's CA")
	case err != nil:
		return nil, nil, cairn.E(op, cairn.KindInvalid, "", err.Error())
	}
	if jt.Role == trust.RoleMetad {
		return nil, nil, cairn.E(op, cairn.KindPermission, "", "a join token of role metad is for a new member of the metad group (metad --join-token), not for a certificate")
	}
	req, p, err := trust.ParseCSR(csr)
	if err != nil {
		return nil, nil, cairn.E(op, cairn.KindInvalid, "", err.Error())
	}
	if p.Role != jt.Role || jt.Name != "" && p.Name != jt.Name {
		return nil, nil, cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("the join token is for %s/%s, the request names %s", jt.Role, jt.Name, p))
	}
	now := m.clock.Now()
	der, err := m.ca.Issue(req.PublicKey, p, m.cfg.CertTTL, nil)
	if err != nil {
		return nil, nil, cairn.E(op, cairn.KindInvalid, "", err.Error())
	}
	err = m.mutate(ctx, func(b *pebble.Batch) error {
		k := joinTokenKey(jt.ID)
		used := false
		if _, err := m.st.get(k); err == nil {
			used = true
		} else if !isNotFound(err) {
			return err
		}
		// Made again after a failover lost its answer, the token was
		// used by this very call: the peer gets a certificate for its
		// request, recorded in place of the one the first run signed.
		replayed := used && callReplayed(ctx)
		if used && !replayed {
			return cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("join token %s was used already: a token works once; ask an admin for a new one", jt.IDString()))
		}
		if p.Role == trust.RoleBlockd {
			if err := m.recordBlockdCert(b, op, p.Name, jt.Name != "" || replayed, der, now); err != nil {
				return err
			}
		}
		if err := pruneJoinTokens(m.st.src(), b, now); err != nil {
			return err
		}
		return b.Set(k, u64(uint64(jt.Expiry.Unix())), nil)
	})
	if err != nil {
		return nil, nil, err
	}
	m.log.Info("joined", zap.Stringer("peer", p), zap.String("token", jt.IDString()))
	return der, m.ca.Cert.Raw, nil
}

// pruneJoinTokens deletes the records of tokens expired before now: an
// expired token is refused for its expiry anyway.
func pruneJoinTokens(db pebble.Reader, b *pebble.Batch, now time.Time) error {
	p := []byte{prefixJoinToken}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if exp, err := parseU64(it.Value()); err == nil && int64(exp) < now.Unix() {
			if err := b.Delete(it.Key(), nil); err != nil {
				return err
			}
		}
	}
	return it.Error()
}

// RenewCert signs csr for the caller's own peer.
func (m *Metad) RenewCert(ctx context.Context, csr []byte) ([]byte, []byte, error) {
	const op = "metad.RenewCert"
	if m.ca == nil {
		return nil, nil, cairn.E(op, cairn.KindInvalid, "", "this metad runs --insecure: it has no CA")
	}
	peer, ok := trust.PeerFrom(ctx)
	if !ok {
		return nil, nil, cairn.E(op, cairn.KindPermission, "", rpc.NoCertificate)
	}
	req, p, err := trust.ParseCSR(csr)
	if err != nil {
		return nil, nil, cairn.E(op, cairn.KindInvalid, "", err.Error())
	}
	if p != peer {
		return nil, nil, cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("certificate %s may renew only itself, not %s", peer, p))
	}
	der, err := m.ca.Issue(req.PublicKey, p, m.cfg.CertTTL, nil)
	if err != nil {
		return nil, nil, cairn.E(op, cairn.KindInvalid, "", err.Error())
	}
	if p.Role == trust.RoleBlockd {
		if err := m.mutate(ctx, func(b *pebble.Batch) error { return m.recordBlockdCert(b, op, p.Name, true, der, m.clock.Now()) }); err != nil {
			return nil, nil, err
		}
	}
	m.log.Info("certificate renewed", zap.Stringer("peer", p))
	return der, m.ca.Cert.Raw, nil
}

// IssueJoinToken makes a join token; the RPC is an admin's only
// (rpc.Auth).
func (m *Metad) IssueJoinToken(ctx context.Context, role trust.Role, name string, ttl time.Duration) (string, trust.JoinToken, error) {
	const op = "metad.IssueJoinToken"
	if m.ca == nil {
		return "", trust.JoinToken{}, cairn.E(op, cairn.KindInvalid, "", "this metad runs --insecure: it has no CA")
	}
	tok, jt, err := m.ca.NewJoinToken(role, name, ttl)
	if err != nil {
		return "", trust.JoinToken{}, cairn.E(op, cairn.KindInvalid, "", err.Error())
	}
	by, _ := trust.PeerFrom(ctx)
	m.log.Info("join token issued", zap.String("token", jt.IDString()), zap.String("role", string(role)), zap.String("name", name),
		zap.Time("expiry", jt.Expiry), zap.Stringer("by", by))
	return tok, jt, nil
}

// hostGroups returns a user's groups in metad's host's database, the
// primary first, for calls made with a user certificate (HDFS resolves
// groups at the NameNode too). Lookups are cached for a minute.
func (m *Metad) hostGroups(name string) []string {
	now := m.clock.Now()
	if v, ok := m.groupCache.Load(name); ok && now.Sub(v.(groupEntry).at) < time.Minute {
		return v.(groupEntry).groups
	}
	var gs []string
	if u, err := user.Lookup(name); err == nil {
		ids, _ := u.GroupIds()
		prim := []string{u.Gid}
		for _, id := range ids {
			if id != u.Gid {
				prim = append(prim, id)
			}
		}
		for _, id := range prim {
			if g, err := user.LookupGroupId(id); err == nil {
				gs = append(gs, g.Name)
			}
		}
	}
	m.groupCache.Store(name, groupEntry{groups: gs, at: now})
	return gs
}

type groupEntry struct {
	groups []string
	at     time.Time
}
