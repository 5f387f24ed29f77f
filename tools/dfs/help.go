package dfs

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// verb is one `cairn dfs -VERB`: its usage line (Hadoop's USAGE), what it
// does (Hadoop's DESCRIPTION, abridged, with cairn's differences) and
// the function that runs it.
type verb struct {
	usage string
	desc  string
	run   func(s *shell, args []string) error
}

var verbs map[string]verb

func init() {
	verbs = map[string]verb{
		"appendToFile":  {"<localsrc> ... <dst>", "Appends the contents of all the given local files to the given dst file. The dst file will be created if it does not exist. If <localSrc> is -, then the input is read from stdin.", (*shell).appendToFile},
		"cat":           {"[-ignoreCrc] <src> ...", "Fetch all files that match the file pattern <src> and display their content on stdout.", (*shell).cat},
		"checksum":      {"<src> ...", "Dump checksum information for files that match the file pattern <src> to stdout: PATH, the algorithm (HH64-COMPOSITE-<chunk size>) and the checksum in hex. Equal bytes give equal checksums whatever the block size.", (*shell).checksum},
		"chgrp":         {"[-R] GROUP PATH...", "This is equivalent to -chown ... :GROUP ...", (*shell).chgrp},
		"chmod":         {"[-R] <MODE[,MODE]... | OCTALMODE> PATH...", "Changes permissions of a file. -R modifies the files recursively.", (*shell).chmod},
		"chown":         {"[-R] [OWNER][:[GROUP]] PATH...", "Changes owner and group of a file. -R modifies the files recursively.", (*shell).chown},
		"concat":        {"<target path> <src path> <src path> ...", "Concatenate existing source files into the target file. Target file and source files should be in the same directory.", (*shell).concat},
		"copyFromLocal": {"[-f] [-p] [-d] <localsrc> ... <dst>", "Identical to the -put command.", (*shell).put},
		"copyToLocal":   {"[-f] [-p] [-ignoreCrc] [-crc] <src> ... <localdst>", "Identical to the -get command.", (*shell).get},
		"count":         {"[-q] [-h] [-v] [-u] <path> ...", "Count the number of directories, files and bytes under the paths that match the specified file pattern. The output columns are:\nDIR_COUNT FILE_COUNT CONTENT_SIZE PATHNAME\nor, with the -q option:\nQUOTA REM_QUOTA SPACE_QUOTA REM_SPACE_QUOTA\n      DIR_COUNT FILE_COUNT CONTENT_SIZE PATHNAME\nThe -h option shows file sizes in human readable format.\nThe -v option displays a header line. cairn has no quotas: none and inf.", (*shell).count},
		"cp":            {"[-f] [-p | -p[topax]] [-d] <src> ... <dst>", "Copy files that match the file pattern <src> to a destination. When copying multiple files, the destination must be a directory.\n  -f  Overwrites the destination if it already exists.\n  -p  Preserves timestamps, ownership and the mode.", (*shell).cp},
		"df":            {"[-h] [<path> ...]", "Shows the capacity, free and used space of the filesystem.\n  -h  Formats the sizes of files in a human-readable fashion rather than a number of bytes.", (*shell).df},
		"du":            {"[-s] [-h] [-v] [-x] <path> ...", "Show the amount of space, in bytes, used by the files that match the specified file pattern.\n  -s  Rather than showing the size of each individual file that matches the pattern, shows the total (summary) size.\n  -h  Formats the sizes of files in a human-readable fashion rather than a number of bytes.\n  -v  option displays a header line.\n  -x  Excludes snapshots from being counted (cairn has none).\nThe output is in the form\n\tsize\tdisk space consumed\tname(full path)", (*shell).du},
		"expunge":       {"[-immediate]", "Delete files from the trash that are older than the retention threshold; with -immediate, all of them.", (*shell).expunge},
		"find":          {"<path> ... <expression> ...", "Finds all files that match the specified expression and applies selected actions to them. If no <path> is specified then defaults to the current working directory. If no expression is specified then defaults to -print.\nExpressions: -name pattern, -iname pattern, -print, -print0, -a (and, implied).", (*shell).find},
		"get":           {"[-f] [-p] [-ignoreCrc] [-crc] <src> ... <localdst>", "Copy files that match the file pattern <src> to the local name. <src> is kept. When copying multiple files, the destination must be a directory.\n  -p  Preserves timestamps and the mode.\n  -f  Overwrites the destination if it already exists.\nA progress bar is drawn on stderr when it is a terminal.", (*shell).get},
		"getfattr":      {"[-R] {-n name | -d} [-e en] <path>", "Displays the extended attribute names and values (if any) for a file or directory.\n  -R  Recursively list the attributes for all files and directories.\n  -n name  Dump the named extended attribute value.\n  -d  Dump all extended attribute values associated with pathname.\n  -e <encoding>  Encode values after retrieving them: \"text\", \"hex\" or \"base64\".", (*shell).getfattr},
		"getmerge":      {"[-nl] [-skip-empty-file] <src> <localdst>", "Get all the files in the directories that match the source file pattern and merge and sort them to only one file on local fs. <src> is kept.\n  -nl  Add a newline character at the end of each file.\n  -skip-empty-file  Do not add new line character for empty file.", (*shell).getmerge},
		"head":          {"<file>", "Show the first 1KB of the file.", (*shell).head},
		"help":          {"[cmd ...]", "Displays help for given command or all commands if none is specified.", (*shell).help},
		"ls":            {"[-C] [-d] [-h] [-R] [-t] [-S] [-r] [-u] [<path> ...]", "List the contents that match the specified file pattern. If path is not specified, the contents of /user/<currentUser> will be listed. For a directory a list of its direct children is returned (unless -d option is specified).\n\nDirectory entries are of the form:\n\tpermissions - userId groupId sizeOfDirectory(in bytes) modificationDate(yyyy-MM-dd HH:mm) directoryName\n\nand file entries are of the form:\n\tpermissions numberOfReplicas userId groupId sizeOfFile(in bytes) modificationDate(yyyy-MM-dd HH:mm) fileName\n\n  -C  Display the paths of files and directories only.\n  -d  Directories are listed as plain files.\n  -h  Formats the sizes of files in a human-readable fashion rather than a number of bytes.\n  -R  Recursively list the contents of directories.\n  -t  Sort files by modification time (most recent first).\n  -S  Sort files by size.\n  -r  Reverse the order of the sort.\n  -u  Use time of last access instead of modification for display and sorting.", (*shell).lsVerb},
		"mkdir":         {"[-p] <path> ...", "Create a directory in specified location.\n  -p  Do not fail if the directory already exists", (*shell).mkdir},
		"moveFromLocal": {"[-f] [-p] [-d] <localsrc> ... <dst>", "Same as -put, except that the source is deleted after it's copied.", (*shell).moveFromLocal},
		"mv":            {"<src> ... <dst>", "Move files that match the specified file pattern <src> to a destination <dst>. When moving multiple files, the destination must be a directory.", (*shell).mv},
		"put":           {"[-f] [-p] [-d] <localsrc> ... <dst>", "Copy files from the local file system into fs. Copying fails if the file already exists, unless the -f flag is given.\n  -p  Preserves timestamps, ownership and the mode.\n  -f  Overwrites the destination if it already exists.\n  -d  Skip creation of temporary file(<dst>._COPYING_).\nA progress bar is drawn on stderr when it is a terminal.", (*shell).put},
		"rm":            {"[-f] [-r|-R] [-skipTrash] [-safely] <src> ...", "Delete all files that match the specified file pattern. Equivalent to the Unix command \"rm <src>\"\n  -f  If the file does not exist, do not display a diagnostic message or modify the exit status to reflect an error.\n  -[rR]  Recursively deletes directories.\n  -skipTrash  option bypasses trash, if enabled, and immediately deletes <src>.\n  -safely  option requires safety confirmation (accepted; cairn asks nothing).", (*shell).rm},
		"rmdir":         {"[--ignore-fail-on-non-empty] <dir> ...", "Removes the directory entry specified by each directory argument, provided it is empty.", (*shell).rmdir},
		"setfattr":      {"{-n name [-v value] | -x name} <path>", "Sets an extended attribute name and value for a file or directory.\n  -n name  The extended attribute name.\n  -v value  The extended attribute value: \"text\", 0x hex or 0s base64.\n  -x name  Remove the extended attribute.", (*shell).setfattr},
		"setrep":        {"[-R] [-w] <rep> <path> ...", "Set the replication level of a file. If <path> is a directory then the command recursively changes the replication factor of all files under the directory tree rooted at <path>.\n  -w  It requests that the command waits for the replication to complete.\n  -R  It is accepted for backwards compatibility. It has no effect.", (*shell).setrep},
		"stat":          {"[format] <path> ...", "Print statistics about the file/directory at <path> in the specified format. Format accepts permissions in octal (%a) and symbolic (%A), filesize in bytes (%b), type (%F), group name of owner (%g), name (%n), block size (%o), replication (%r), user name of owner (%u), access date (%x, %X), and modification date (%y, %Y). %x and %y show UTC date as \"yyyy-MM-dd HH:mm:ss\", and %X and %Y show milliseconds since January 1, 1970 UTC. If the format is not specified, %y is used by default.", (*shell).stat},
		"tail":          {"[-f] [-s <sleep interval>] <file>", "Show the last 1KB of the file.\n  -f  Shows appended data as the file grows.\n  -s  With -f, defines the sleep interval between iterations in milliseconds.", (*shell).tail},
		"test":          {"-[defswrz] <path>", "Answer various questions about <path>, with result via exit status.\n  -d  return 0 if <path> is a directory.\n  -e  return 0 if <path> exists.\n  -f  return 0 if <path> is a file.\n  -s  return 0 if file <path> is greater than zero bytes in size.\n  -w  return 0 if file <path> exists and write permission is granted.\n  -r  return 0 if file <path> exists and read permission is granted.\n  -z  return 0 if file <path> is zero bytes in size, else return 1.", (*shell).test},
		"text":          {"[-ignoreCrc] <src> ...", "Takes a source file and outputs the file in text format. The allowed formats are plain text and gzip.", (*shell).text},
		"touchz":        {"<path> ...", "Creates a file of zero length at <path> with current time as the timestamp of that <path>. An error is returned if the file exists with non-zero length.", (*shell).touchz},
		"truncate":      {"[-w] <length> <path> ...", "Refused: cairn files are write-once and append-only, so a file is never cut short in place. Rewrite it instead (-rm then -put, or -put -f).", (*shell).truncate},
		"usage":         {"[cmd ...]", "Displays the usage for given command or all commands if none is specified.", (*shell).usageVerb},
	}
}

func verbNames() []string {
	var names []string
	for n := range verbs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// printUsage is FsShell's printUsage: every verb's usage line.
func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: cairn dfs [generic options]")
	for _, n := range verbNames() {
		fmt.Fprintf(w, "\t[-%s %s]\n", n, verbs[n].usage)
	}
	fmt.Fprintln(w, "\nGeneric options supported are:\n--metad <host:port>   metad to talk to (default $CAIRN_METAD or 127.0.0.1:9000)\n-D <property=value>   dfs.blocksize or dfs.replication of the files written")
}

func (s *shell) usageVerb(args []string) error {
	if len(args) == 0 {
		printUsage(s.out)
		return nil
	}
	for _, a := range args {
		n := strings.TrimPrefix(a, "-")
		v, ok := verbs[n]
		if !ok {
			return usageError{fmt.Sprintf("`%s': Unknown command", a)}
		}
		fmt.Fprintf(s.out, "Usage: cairn dfs [generic options] -%s %s\n", n, v.usage)
	}
	return nil
}

func (s *shell) help(args []string) error {
	names := args
	if len(names) == 0 {
		printUsage(s.out)
		fmt.Fprintln(s.out)
		names = verbNames()
	}
	for _, a := range names {
		n := strings.TrimPrefix(a, "-")
		v, ok := verbs[n]
		if !ok {
			return usageError{fmt.Sprintf("`%s': Unknown command", a)}
		}
		fmt.Fprintf(s.out, "-%s %s :\n", n, v.usage)
		for _, l := range strings.Split(v.desc, "\n") {
			fmt.Fprintf(s.out, "  %s\n", l)
		}
		fmt.Fprintln(s.out)
	}
	return nil
}
