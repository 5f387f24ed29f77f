package dfs

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"cairn"
)

// getfattr is -getfattr [-R] {-n NAME | -d} [-e ENCODING] PATH, as
// Hadoop's XAttrCommands.Getfattr: "# file: PATH", then NAME=VALUE lines
// (values as "text", 0x hex or 0s base64; a name alone for an empty value).
func (s *shell) getfattr(args []string) error {
	o, err := parse(args, 1, 1, words("R d"), "n", "e")
	if err != nil {
		return err
	}
	enc := strings.ToLower(o.vals["e"])
	if enc == "" {
		enc = "text"
	}
	if enc != "text" && enc != "hex" && enc != "base64" {
		return usageError{"Invalid/unsupported encoding option specified: " + o.vals["e"]}
	}
	name, dump := o.vals["n"], o.has("d")
	if (name == "") == !dump {
		return usageError{"Must specify '-n name' or '-d' option."}
	}
	s.walk(o.args, o.has("R"), func(it item) error {
		fmt.Fprintf(s.out, "# file: %s\n", it.disp)
		names := []string{name}
		if dump {
			var err error
			names, err = s.ns().ListXattrs(s.ctx, it.abs)
			if err != nil {
				return perr(it.disp, err)
			}
			sort.Strings(names)
		}
		for _, n := range names {
			v, err := s.ns().GetXattr(s.ctx, it.abs, n)
			if cairn.KindOf(err) == cairn.KindNotExist && !dump {
				return newPathError(it.disp, "At least one of the attributes provided was not found.")
			}
			if err != nil {
				return perr(it.disp, err)
			}
			if len(v) == 0 {
				fmt.Fprintln(s.out, n)
				continue
			}
			fmt.Fprintf(s.out, "%s=%s\n", n, encodeXattr(v, enc))
		}
		return nil
	})
	return nil
}

// encodeXattr is Hadoop's XAttrCodec.encodeValue.
func encodeXattr(v []byte, enc string) string {
	switch enc {
	case "hex":
		return "0x" + hex.EncodeToString(v)
	case "base64":
		return "0s" + base64.StdEncoding.EncodeToString(v)
	}
	return `"` + string(v) + `"`
}

// decodeXattr is Hadoop's XAttrCodec.decodeValue: "quoted text", 0x hex,
// 0s base64, or text as it is.
func decodeXattr(v string) ([]byte, error) {
	switch {
	case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
		return []byte(v[1 : len(v)-1]), nil
	case strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0X"):
		return hex.DecodeString(v[2:])
	case strings.HasPrefix(v, "0s") || strings.HasPrefix(v, "0S"):
		return base64.StdEncoding.DecodeString(v[2:])
	}
	return []byte(v), nil
}

// setfattr is -setfattr {-n NAME [-v VALUE] | -x NAME} PATH.
func (s *shell) setfattr(args []string) error {
	o, err := parse(args, 1, 1, nil, "n", "v", "x")
	if err != nil {
		return err
	}
	name, remove := o.vals["n"], o.vals["x"]
	switch {
	case name == "" && remove == "":
		return usageError{"Must specify '-n name' or '-x name' option."}
	case name != "" && remove != "":
		return usageError{"Can not specify both '-n name' and '-x name' option."}
	case remove != "" && o.has("v"):
		return usageError{"Can not specify both '-v value' and '-x name' option."}
	}
	var value []byte
	if o.has("v") {
		value, err = decodeXattr(o.vals["v"])
		if err != nil {
			return usageError{"Invalid value " + strconv.Quote(o.vals["v"]) + ": " + err.Error()}
		}
	}
	s.walk(o.args, false, func(it item) error {
		var err error
		if remove != "" {
			err = s.ns().RemoveXattr(s.ctx, it.abs, remove)
		} else {
			err = s.ns().SetXattr(s.ctx, it.abs, name, value, 0)
		}
		if err != nil {
			return perr(it.disp, err)
		}
		return nil
	})
	return nil
}
