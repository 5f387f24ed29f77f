package webhdfs

import (
	"net/http"
	"net/url"
	"testing"
)

// TestRedirectParamsWin: the parameters the place adds to a redirect (the
// token issued for the caller) replace the caller's own of that name.
func TestRedirectParamsWin(t *testing.T) {
	h, _ := testHandler(NameNode)
	h.Redirect = func(s *Session, q *Request) (*url.URL, url.Values, error) {
		return &url.URL{Scheme: "https", Host: "blockd:9864"}, url.Values{"delegation": {"issued"}}, nil
	}
	rec := do(h, "GET", "/webhdfs/v1/f?op=OPEN&delegation=stale")
	loc, err := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusTemporaryRedirect || err != nil || loc.Query()["delegation"][0] != "issued" || len(loc.Query()["delegation"]) != 1 {
		t.Fatalf("OPEN with delegation=stale: %d Location %q", rec.Code, rec.Header().Get("Location"))
	}
}
