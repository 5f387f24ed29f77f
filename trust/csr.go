package trust

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
)

// MaxCSRLen bounds a certificate request before it is parsed.
const MaxCSRLen = 4096

// NewCSR makes a certificate request for key naming p.
func NewCSR(key crypto.Signer, p Peer) ([]byte, error) {
	if err := ValidName(p.Name); err != nil {
		return nil, err
	}
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: p.Name},
		URIs:    []*url.URL{p.URI()},
	}, key)
}

// ParseCSR parses and checks a certificate request from the network: its
// size, its self-signature and the one peer it names. What the request
// may be granted is the caller's decision.
func ParseCSR(der []byte) (*x509.CertificateRequest, Peer, error) {
	if len(der) == 0 || len(der) > MaxCSRLen {
		return nil, Peer{}, fmt.Errorf("certificate request of %d bytes (1 to %d)", len(der), MaxCSRLen)
	}
	r, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, Peer{}, fmt.Errorf("certificate request: %w", err)
	}
	if err := r.CheckSignature(); err != nil {
		return nil, Peer{}, fmt.Errorf("certificate request: %w", err)
	}
	p, err := peerFromURIs(r.URIs)
	if err != nil {
		return nil, Peer{}, fmt.Errorf("certificate request: %w", err)
	}
	return r, p, nil
}
