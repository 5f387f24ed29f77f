package dfs

import (
	"encoding/hex"
	"fmt"

	"cairn"
)

// checksum is -checksum PATH...: "PATH\tALGORITHM\tHEX" per file, as
// Hadoop's Display.Checksum, with cairn's composite checksum
// (client.FileChecksum, docs/FORMAT.md): equal bytes, equal checksum,
// whatever the block size.
func (s *shell) checksum(args []string) error {
	o, err := parse(args, 1, -1, words("v"))
	if err != nil {
		return err
	}
	s.eachFile(o.args, func(it item) error {
		if it.fi.IsDir() {
			return newPathError(it.disp, kindText[cairn.KindIsDir])
		}
		sum, err := s.cl.FileChecksum(s.ctx, it.abs)
		if err != nil {
			return perr(it.disp, err)
		}
		fmt.Fprintf(s.out, "%s\t%s\t%s\n", it.disp, sum.Algorithm, hex.EncodeToString(sum.Bytes))
		return nil
	})
	return nil
}
