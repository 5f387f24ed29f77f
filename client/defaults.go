package client

import (
	"context"
	"time"
)

// ServerDefaults are metad's settings a client follows, as HDFS's
// FsServerDefaults.
type ServerDefaults struct {
	// TrashInterval is how long a removed path stays in the trash (metad
	// --trash-interval); 0: trash is off, removal is immediate.
	TrashInterval time.Duration
}

// ServerDefaults asks metad for its defaults.
func (c *Client) ServerDefaults(ctx context.Context) (ServerDefaults, error) {
	iv, err := c.Trust().ServerDefaults(ctx)
	if err != nil {
		return ServerDefaults{}, err
	}
	return ServerDefaults{TrashInterval: iv}, nil
}
