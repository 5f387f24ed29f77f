// Package webui is the web UI of cairn's daemons: on metad's HTTP port an
// overview of the cluster, the list of blockds and a file browser that
// shows each file's blocks and where they live; on each blockd's HTTP
// port one status page. Pages are html/template, styled by one embedded
// stylesheet: nothing is fetched from elsewhere, no script runs, and every
// page stays under MaxPage bytes (long lists are split into pages).
//
// The UI reads what it shows through Source (metad) and BlockdSource
// (blockd), so it is tested against small fakes and served by the real
// daemons from their in-process state. Who may see it is the daemon's
// business: metad's HTTP port lets in only a credential of the cluster
// (trust.RequireCredential) on a secure cluster.
package webui

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"

	"cairn"
)

// MaxPage bounds the bytes of any page the UI serves.
const MaxPage = 100 << 10

// Source is what metad's UI reads. Each call answers for the identity the
// request's context carries: the namespace calls check permissions as
// metad's RPCs do.
type Source interface {
	// Status is the overview's cluster-wide figures.
	Status(ctx context.Context) (Status, error)
	// Report lists every blockd metad knows, live or dead.
	Report(ctx context.Context) (cairn.ClusterReport, error)
	// Stat describes path (cairn.ErrNotExist if there is none).
	Stat(ctx context.Context, path string) (cairn.FileInfo, error)
	// List returns up to limit entries of directory path after the name
	// after ("" from the start), in name order, and whether more follow.
	List(ctx context.Context, path, after string, limit int) ([]cairn.FileInfo, bool, error)
	// BlockLocations lists the blocks of file path with their replicas'
	// blockds.
	BlockLocations(ctx context.Context, path string) (cairn.FileBlocks, error)
}

// Status is what the overview shows beside the blockds.
type Status struct {
	NamespaceID string
	Version     string
	Started     time.Time
	SafeMode    cairn.SafeModeStatus
	Stats       cairn.FsStats
	Health      BlockHealth
}

// BlockHealth counts blocks in trouble, as of Checked (zero: not counted
// yet). UnderReplicated have a live replica but fewer in service than
// their file wants; Missing have no live good replica; Corrupt have at
// least one replica known bad.
type BlockHealth struct {
	UnderReplicated, Corrupt, Missing int64
	Checked                           time.Time
}

// UI serves metad's pages.
type UI struct {
	src Source
	log *zap.Logger
	now func() time.Time
	mux *http.ServeMux
}

// New returns metad's UI reading from src. It serves "/" (the overview),
// "/datanodes", "/browse?path=P" and "/static/"; any other path is 404.
func New(src Source, log *zap.Logger) *UI {
	if log == nil {
		log = zap.NewNop()
	}
	u := &UI{src: src, log: log, now: time.Now, mux: http.NewServeMux()}
	u.mux.HandleFunc("GET /{$}", u.overview)
	u.mux.HandleFunc("GET /datanodes", u.datanodes)
	u.mux.HandleFunc("GET /browse", u.browse)
	u.mux.Handle("GET /static/", staticHandler())
	return u
}

func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.mux.ServeHTTP(w, r) }
