// Package trust owns cairn's certificates: the cluster CA that `cairn
// metad --format` creates in metad's data directory, the certificates it
// signs for each role (metad, blockd, mount, user, admin) with the role and
// identity in a URI SAN (cairn://ROLE/NAME), the TLS 1.3 configurations of
// servers and clients (mutual, chained to the cluster CA, never plain
// text), reading the role and identity of a verified peer, join tokens,
// certificate requests, the revocation list metad checks at each handshake,
// and renewal of a certificate before it expires.
//
// On disk (docs/FORMAT.md): metad's DIR/trust holds ca.pem, ca.key,
// join.key and revoked; a node's credentials directory holds key.pem,
// cert.pem and ca.pem. Every key file is mode 0600.
package trust
