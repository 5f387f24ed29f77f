package webhdfs

import (
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"net"
	"strconv"
	"strings"

	"cairn"
)

// The JSON of WebHDFS answers, field for field as Hadoop's JsonUtil
// writes them.

// FileStatus is one entry (HdfsFileStatus).
type FileStatus struct {
	AccessTime       int64  `json:"accessTime"`
	BlockSize        int64  `json:"blockSize"`
	ChildrenNum      int64  `json:"childrenNum"`
	FileID           uint64 `json:"fileId"`
	Group            string `json:"group"`
	Length           int64  `json:"length"`
	ModificationTime int64  `json:"modificationTime"`
	Owner            string `json:"owner"`
	PathSuffix       string `json:"pathSuffix"`
	Permission       string `json:"permission"`
	Replication      int    `json:"replication"`
	StoragePolicy    int    `json:"storagePolicy"`
	Symlink          string `json:"symlink,omitempty"`
	Type             string `json:"type"`
}

// fileStatus is fi as WebHDFS shows it; suffix is its pathSuffix (""
// for the path asked about itself).
func fileStatus(fi cairn.FileInfo, suffix string) FileStatus {
	st := FileStatus{
		AccessTime: fi.AccessTime.UnixMilli(), FileID: fi.Inode, Group: fi.Group, Owner: fi.Owner,
		ModificationTime: fi.ModTime.UnixMilli(), PathSuffix: suffix, Permission: permString(fi.Mode),
	}
	if fi.AccessTime.IsZero() {
		st.AccessTime = 0
	}
	switch {
	case fi.IsDir():
		st.Type = "DIRECTORY"
	case fi.Mode&fs.ModeSymlink != 0:
		st.Type, st.Symlink = "SYMLINK", fi.Symlink
	default:
		st.Type, st.Length, st.BlockSize, st.Replication = "FILE", fi.Size, fi.BlockSize, fi.Replication
	}
	return st
}

// permString is a mode's permission as Hadoop writes it: octal, the
// sticky bit as a leading 1 ("755", "1777").
func permString(m fs.FileMode) string {
	p := uint32(m.Perm())
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return strconv.FormatUint(uint64(p), 8)
}

// ContentSummary is GETCONTENTSUMMARY's answer; cairn has no quotas.
type ContentSummary struct {
	DirectoryCount int64          `json:"directoryCount"`
	FileCount      int64          `json:"fileCount"`
	Length         int64          `json:"length"`
	Quota          int64          `json:"quota"`
	SpaceConsumed  int64          `json:"spaceConsumed"`
	SpaceQuota     int64          `json:"spaceQuota"`
	TypeQuota      map[string]any `json:"typeQuota"`
}

// BlockLocation is one block of GETFILEBLOCKLOCATIONS.
type BlockLocation struct {
	CachedHosts   []string `json:"cachedHosts"`
	Corrupt       bool     `json:"corrupt"`
	Hosts         []string `json:"hosts"`
	Length        int64    `json:"length"`
	Names         []string `json:"names"`
	Offset        int64    `json:"offset"`
	StorageIDs    []string `json:"storageIds"`
	StorageTypes  []string `json:"storageTypes"`
	TopologyPaths []string `json:"topologyPaths"`
}

func blockLocation(lb cairn.LocatedBlock) BlockLocation {
	bl := BlockLocation{CachedHosts: []string{}, Hosts: []string{}, Names: []string{}, StorageIDs: []string{},
		StorageTypes: []string{}, TopologyPaths: []string{}, Offset: lb.Offset, Length: lb.Len}
	bl.Corrupt = len(lb.Locations) > 0 && lb.Corrupt >= len(lb.Locations)
	for _, n := range lb.Locations {
		host, _, err := net.SplitHostPort(n.DataAddr)
		if err != nil {
			host = n.DataAddr
		}
		rack := n.Rack
		if rack == "" {
			rack = "/default-rack"
		}
		bl.Hosts = append(bl.Hosts, host)
		bl.Names = append(bl.Names, n.DataAddr)
		bl.StorageIDs = append(bl.StorageIDs, n.StorageID)
		bl.StorageTypes = append(bl.StorageTypes, "DISK")
		bl.TopologyPaths = append(bl.TopologyPaths, strings.TrimSuffix(rack, "/")+"/"+n.DataAddr)
	}
	return bl
}

// Checksum is a file checksum (GETFILECHECKSUM): its algorithm's name,
// its bytes and their length.
type Checksum struct {
	Algorithm string
	Bytes     []byte
}

func (c Checksum) json() map[string]any {
	return map[string]any{"FileChecksum": map[string]any{"algorithm": c.Algorithm, "bytes": hex.EncodeToString(c.Bytes), "length": len(c.Bytes)}}
}

// XAttr is one extended attribute of GETXATTRS.
type XAttr struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// encodeXattrValue writes v as Hadoop's XAttrCodec does: text in double
// quotes, hex with 0x, base64 with 0s.
func encodeXattrValue(v []byte, encoding string) (string, error) {
	switch strings.ToLower(encoding) {
	case "", "text":
		return strconv.Quote(string(v)), nil
	case "hex":
		return "0x" + hex.EncodeToString(v), nil
	case "base64":
		return "0s" + base64.StdEncoding.EncodeToString(v), nil
	}
	return "", excIllegal("Invalid value for webhdfs parameter \"encoding\": %q (text, hex or base64)", encoding)
}

// decodeXattrValue reads a SETXATTR value as XAttrCodec does: 0x hex,
// 0s base64, a double-quoted string, else the text itself.
func decodeXattrValue(s string) ([]byte, error) {
	switch {
	case len(s) >= 2 && (s[:2] == "0x" || s[:2] == "0X"):
		b, err := hex.DecodeString(s[2:])
		if err != nil {
			return nil, excIllegal("xattr.value %q: bad hex: %v", s, err)
		}
		return b, nil
	case len(s) >= 2 && (s[:2] == "0s" || s[:2] == "0S"):
		b, err := base64.StdEncoding.DecodeString(s[2:])
		if err != nil {
			return nil, excIllegal("xattr.value %q: bad base64: %v", s, err)
		}
		return b, nil
	case len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"':
		return []byte(s[1 : len(s)-1]), nil
	}
	return []byte(s), nil
}
