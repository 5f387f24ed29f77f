package trust

import (
	"net/http"
	"strings"
)

// RequireCert wraps an HTTP handler of a TLS server (ServerConfig): a
// request without a verified client certificate of the cluster CA gets
// 401 and nothing else, and paths under /debug/ (pprof) need an admin
// certificate (403 otherwise).
func RequireCert(next http.Handler) http.Handler { return RequireCredential(next, nil, nil) }

// RequireCertOrSession is RequireCert that also lets in a request whose
// session cookie (UISessionCookie) session accepts, as the peer it
// returns. session may be nil: certificates only.
func RequireCertOrSession(next http.Handler, session func(cookie string) (Peer, bool)) http.Handler {
	return RequireCredential(next, session, nil)
}

// RequireCredential is RequireCertOrSession that also lets in a request
// bringing a delegation token (the DelegationParam URL parameter, or
// "Authorization: Bearer TOKEN") that delegation accepts, as the peer it
// returns; one it refuses gets 401 with its reason. delegation may be nil.
// A verified client certificate comes first; a delegation token, when a
// request brings one, before a session cookie.
func RequireCredential(next http.Handler, session func(cookie string) (Peer, bool), delegation func(token string) (Peer, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			http.Error(w, "401 unauthorized: this port needs TLS and a certificate of the cluster CA", http.StatusUnauthorized)
			return
		}
		p, _, ok := PeerOfState(*r.TLS)
		if tok := DelegationTokenOf(r); !ok && tok != "" && delegation != nil {
			var err error
			if p, err = delegation(tok); err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="cluster", error="invalid_token"`)
				http.Error(w, "401 unauthorized: "+err.Error(), http.StatusUnauthorized)
				return
			}
			ok = true
		}
		if !ok && session != nil {
			if ck, err := r.Cookie(UISessionCookie); err == nil {
				p, ok = session(ck.Value)
			}
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Cairn realm="cluster", cert`)
			http.Error(w, "401 unauthorized: present a certificate of the cluster CA", http.StatusUnauthorized)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/debug/") && p.Role != RoleAdmin {
			http.Error(w, "403 forbidden: "+p.String()+" is not an admin", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPeer(r.Context(), p)))
	})
}

// DelegationTokenOf is the delegation token r brings, if any: its
// DelegationParam URL parameter, else an "Authorization: Bearer" header.
func DelegationTokenOf(r *http.Request) string {
	if tok := r.URL.Query().Get(DelegationParam); tok != "" {
		return tok
	}
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(tok)
	}
	return ""
}
