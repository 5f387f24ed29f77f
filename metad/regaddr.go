package metad

import (
	"context"
	"net"
	"slices"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/peer"

	"cairn"
)

// A blockd's certificate names its storage ID, not its host: the data
// address a registration gives is the blockd's word. metad logs a WARN
// when that address's host is not the address the registration came
// from (a blockd behind NAT or with several interfaces may cause it; so
// may a blockd certificate used to point clients elsewhere).

// dataAddrLookup bounds the name lookup of a registration's data host.
const dataAddrLookup = time.Second

// checkDataAddr warns when r's data host is not the source of the
// registration's connection. Without a connection (in-process calls) or
// a host to compare, it says nothing.
func (m *Metad) checkDataAddr(ctx context.Context, r cairn.Registration) {
	pr, ok := peer.FromContext(ctx)
	if !ok || pr.Addr == nil {
		return
	}
	src := net.ParseIP(hostOf(pr.Addr.String()))
	host := hostOf(r.DataAddr)
	if src == nil || host == "" {
		return
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsUnspecified() {
			return
		}
		ips = []net.IP{ip}
	} else {
		lctx, cancel := context.WithTimeout(ctx, dataAddrLookup)
		addrs, err := net.DefaultResolver.LookupIPAddr(lctx, host)
		cancel()
		if err != nil {
			m.log.Warn("a blockd's data address does not resolve", zap.String("storage_id", r.StorageID),
				zap.String("data", r.DataAddr), zap.String("source", pr.Addr.String()), zap.Error(err))
			return
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	if slices.ContainsFunc(ips, func(ip net.IP) bool { return ip.Equal(src) || ip.IsLoopback() && src.IsLoopback() }) {
		return
	}
	m.log.Warn("a blockd registered a data address on another host than its connection's source: clients will be sent there",
		zap.String("storage_id", r.StorageID), zap.String("data", r.DataAddr), zap.String("source", pr.Addr.String()))
}
