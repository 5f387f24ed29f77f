package webui

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// BlockdSource is what a blockd's status page reads.
type BlockdSource interface {
	BlockdStatus(ctx context.Context) BlockdStatus
}

// BlockdStatus is a blockd's state for its page.
type BlockdStatus struct {
	StorageID, NamespaceID string
	DataAddr, Rack         string
	Metad                  string // the metad it reports to
	Version                string
	Started                time.Time
	Replicas               int   // in every state, on the volumes in service
	Active                 int64 // data transfers being served
	Volumes                []VolumeStatus
	Scanner                *ScannerStatus // nil when the scanner is off
}

// VolumeStatus is one data directory; Failed says why it is out of
// service ("" while in service).
type VolumeStatus struct {
	Dir                       string
	Failed                    string
	Capacity, Used, Remaining int64
	Replicas                  int
}

// ScannerStatus is the block scanner's progress since the blockd started.
type ScannerStatus struct {
	Period          time.Duration
	Rate            int64 // bytes a second a disk
	Verified, Bytes int64
	Bad             int64
}

// BlockdHandler serves a blockd's status page at "/" and its stylesheet
// under "/static/".
func BlockdHandler(src BlockdSource, log *zap.Logger) http.Handler {
	if log == nil {
		log = zap.NewNop()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		if r.URL.RawQuery != "" {
			serveError(w, log, "blockd", now, http.StatusBadRequest, errString("this page takes no parameters"))
			return
		}
		st := src.BlockdStatus(r.Context())
		b, err := render("blockd", page{Daemon: "blockd", Title: "Blockd " + st.StorageID, Now: now, Data: st})
		if err != nil {
			serveError(w, log, "blockd", now, http.StatusInternalServerError, err)
			return
		}
		write(w, http.StatusOK, b)
	})
	mux.Handle("GET /static/", staticHandler())
	return mux
}
