package metad

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"cairn"
	"cairn/trust"
)

// Sign-in links for metad's HTTP UI (trust.UIToken): an admin asks for
// one over RPC (cairn admin -ui-link); opening it once sets a session
// cookie, HttpOnly, Secure, SameSite=Strict, lasting trust.UISessionTTL,
// and redirects to /. The HTTP port then takes that session as it takes
// a client certificate. A link's ID is recorded when used, durably, as a
// join token's is (the "j" keys), so it works once, across restarts too.

// IssueUILink makes a sign-in link's token for the calling admin and
// returns it with the HTTP port's address; the RPC is an admin's only
// (rpc.Auth).
func (m *Metad) IssueUILink(ctx context.Context, ttl time.Duration) (string, time.Time, string, error) {
	const op = "metad.IssueUILink"
	if m.ca == nil {
		return "", time.Time{}, "", cairn.E(op, cairn.KindInvalid, "", "this metad runs --insecure: its HTTP port needs no sign-in")
	}
	addr, _ := m.httpAddr.Load().(string)
	if addr == "" {
		return "", time.Time{}, "", cairn.E(op, cairn.KindInvalid, "", "this metad serves no HTTP port (--http is empty)")
	}
	by, ok := trust.PeerFrom(ctx)
	if !ok || by.Role != trust.RoleAdmin {
		return "", time.Time{}, "", cairn.E(op, cairn.KindPermission, "", "a sign-in link needs an admin certificate")
	}
	if ttl <= 0 || ttl > trust.MaxUILinkTTL {
		return "", time.Time{}, "", cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("link lifetime %v out of range (0, %v]", ttl, trust.MaxUILinkTTL))
	}
	tok, t, err := m.ca.NewUIToken(trust.UILink, by.Name, ttl)
	if err != nil {
		return "", time.Time{}, "", cairn.E(op, cairn.KindInvalid, "", err.Error())
	}
	m.log.Info("UI sign-in link issued", zap.String("link", t.IDString()), zap.Stringer("by", by), zap.Time("expiry", t.Expiry))
	return tok, t.Expiry, addr, nil
}

// uiLogin serves a sign-in link: a good, unused link sets the session
// cookie and redirects to /; anything else gets 401.
func (m *Metad) uiLogin(w http.ResponseWriter, r *http.Request) {
	refuse := func(why string) {
		m.log.Warn("UI sign-in refused", zap.String("remote", r.RemoteAddr), zap.String("why", why))
		http.Error(w, "401 unauthorized: "+why, http.StatusUnauthorized)
	}
	if r.TLS == nil || m.ca == nil {
		refuse("sign-in links need TLS and the cluster CA")
		return
	}
	now := m.clock.Now()
	t, err := m.ca.VerifyUIToken(r.URL.Query().Get("token"), trust.UILink, now)
	switch {
	case errors.Is(err, trust.ErrUITokenExpired):
		refuse("the sign-in link expired: run 'cairn admin -ui-link' for a new one")
		return
	case err != nil:
		refuse("not a sign-in link of this cluster")
		return
	}
	err = m.mutate(r.Context(), func(b *pebble.Batch) error {
		k := joinTokenKey(t.ID)
		if _, err := m.st.get(k); err == nil {
			return errLinkUsed
		} else if !isNotFound(err) {
			return err
		}
		if err := pruneJoinTokens(m.st.src(), b, now); err != nil {
			return err
		}
		return b.Set(k, u64(uint64(t.Expiry.Unix())), nil)
	})
	switch {
	case errors.Is(err, errLinkUsed):
		refuse("the sign-in link was used already: a link works once; run 'cairn admin -ui-link' for a new one")
		return
	case err != nil:
		m.log.Error("UI sign-in: record the link", zap.Error(err))
		http.Error(w, "500 cannot record the sign-in", http.StatusInternalServerError)
		return
	}
	sess, st, err := m.ca.NewUIToken(trust.UISession, t.Name, trust.UISessionTTL)
	if err != nil {
		m.log.Error("UI sign-in: make a session", zap.Error(err))
		http.Error(w, "500 cannot make a session", http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: trust.UISessionCookie, Value: sess, Path: "/", Expires: st.Expiry,
		MaxAge: int(trust.UISessionTTL / time.Second), HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	m.log.Info("UI signed in", zap.String("admin", t.Name), zap.String("link", t.IDString()), zap.String("remote", r.RemoteAddr),
		zap.Time("session_expiry", st.Expiry))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

var errLinkUsed = errors.New("sign-in link used")

// uiSession is the peer of a session cookie metad signed that has not
// expired: the admin whose link made it.
func (m *Metad) uiSession(cookie string) (trust.Peer, bool) {
	if m.ca == nil {
		return trust.Peer{}, false
	}
	t, err := m.ca.VerifyUIToken(cookie, trust.UISession, m.clock.Now())
	if err != nil {
		return trust.Peer{}, false
	}
	return trust.Peer{Role: trust.RoleAdmin, Name: t.Name}, true
}

// DataTransfer says whether blockds' data ports take mutual TLS only
// (--encrypt-data).
func (m *Metad) DataTransfer(context.Context) (bool, error) { return m.cfg.EncryptData, nil }
