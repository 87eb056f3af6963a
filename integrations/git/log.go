package git

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// logFormat is one commit of `git log -z`: a \x01 marker, then NUL-ended
// fields, the raw message last (messages cannot hold a NUL). With -z each
// commit's format ends in a NUL; when the commit has a diff, a "\n" follows
// and then its numstat entries, each NUL-ended. A numstat entry starts with
// a digit or '-', never with \x01, so the marker starts every commit
// unambiguously.
const logFormat = "%x01%H%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B"

// logArgs are git log's arguments for the commits read from stdin. Every
// option that user or system config could change and that would change
// the output is set explicitly.
func logArgs(mirror string) []string {
	return []string{
		"--git-dir=" + mirror,
		"-c", "core.quotePath=false",
		"log", "--stdin",
		"--reverse", "--topo-order", // parents before children
		"--format=" + logFormat, "-z",
		"--numstat", "-M", "--root", "--diff-merges=first-parent",
		"--no-color", "--no-ext-diff", "--no-textconv", "--no-relative", "--no-use-mailmap",
		"--no-show-signature", "--no-notes", "--encoding=UTF-8", "--no-abbrev",
	}
}

// Person is an author or a committer.
type Person struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	// Date is RFC 3339 in the commit's own offset.
	Date string `json:"date"`
}

// File is one path a commit changed against its first parent.
type File struct {
	Path      string `json:"path"`
	OldPath   string `json:"old_path"`
	Additions int64  `json:"additions"`
	Deletions int64  `json:"deletions"`
	Binary    bool   `json:"binary"`
}

// Commit is the `commit` model.
type Commit struct {
	SHA       string   `json:"sha"`
	Parents   []string `json:"parents"`
	Author    Person   `json:"author"`
	Committer Person   `json:"committer"`
	Message   string   `json:"message"`
	Files     []File   `json:"files"`
	Repo      string   `json:"repo"`
}

// logParser reads git log's output one commit at a time: memory holds one
// commit, whatever the size of the history.
type logParser struct {
	r    *bufio.Reader
	repo string
	long []byte // a field longer than the reader's buffer
}

func newLogParser(r io.Reader, repo string) *logParser {
	return &logParser{r: bufio.NewReaderSize(r, 256<<10), repo: repo}
}

var errBadLog = errors.New("unexpected git log output")

// field reads up to the next NUL and returns what came before it. The
// slice is valid until the next read.
func (p *logParser) field() ([]byte, error) {
	b, err := p.r.ReadSlice(0)
	if err == nil {
		return b[:len(b)-1], nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if cap(p.long) > 4<<20 {
		p.long = nil // do not keep the memory of one huge message
	}
	p.long = append(p.long[:0], b...)
	for {
		b, err = p.r.ReadSlice(0)
		p.long = append(p.long, b...)
		if err == nil {
			return p.long[:len(p.long)-1], nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// next returns the next commit, or io.EOF after the last.
func (p *logParser) next() (Commit, error) {
	b, err := p.r.ReadByte()
	if err != nil {
		return Commit{}, err // io.EOF: the end
	}
	if b != 0x01 {
		return Commit{}, fmt.Errorf("%w: byte %q where a commit should start", errBadLog, b)
	}
	var f [9]string
	for i := range f {
		v, err := p.field()
		if err != nil {
			return Commit{}, fmt.Errorf("%w: commit header: %v", errBadLog, err)
		}
		f[i] = string(v)
	}
	c := Commit{
		SHA:       f[0],
		Parents:   strings.Fields(f[1]),
		Author:    Person{Name: f[2], Email: f[3], Date: f[4]},
		Committer: Person{Name: f[5], Email: f[6], Date: f[7]},
		Message:   f[8],
		Files:     []File{},
		Repo:      p.repo,
	}
	if c.Parents == nil {
		c.Parents = []string{}
	}
	for {
		peek, err := p.r.Peek(1)
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		if err != nil {
			return Commit{}, err
		}
		switch peek[0] {
		case 0x01:
			return c, nil
		case '\n': // between the message and the diff
			_, _ = p.r.Discard(1)
			continue
		}
		file, err := p.numstat()
		if err != nil {
			return Commit{}, fmt.Errorf("%w: numstat of %s: %v", errBadLog, c.SHA, err)
		}
		c.Files = append(c.Files, file)
	}
}

// numstat reads one entry: "adds\tdels\tpath\0", or for a rename
// "adds\tdels\t\0old\0new\0". Binary files count "-" for both.
func (p *logParser) numstat() (File, error) {
	tok, err := p.field()
	if err != nil {
		return File{}, err
	}
	adds, rest, ok1 := bytes.Cut(tok, []byte{'\t'})
	dels, path, ok2 := bytes.Cut(rest, []byte{'\t'})
	if !ok1 || !ok2 {
		return File{}, fmt.Errorf("entry %q", tok)
	}
	var f File
	if string(adds) == "-" && string(dels) == "-" {
		f.Binary = true
	} else if f.Additions, ok1 = atoi(adds); !ok1 {
		return File{}, fmt.Errorf("additions %q", adds)
	} else if f.Deletions, ok2 = atoi(dels); !ok2 {
		return File{}, fmt.Errorf("deletions %q", dels)
	}
	if len(path) > 0 {
		f.Path = string(path)
		return f, nil
	}
	old, err := p.field()
	if err != nil {
		return File{}, err
	}
	f.OldPath = string(old)
	newPath, err := p.field()
	if err != nil {
		return File{}, err
	}
	f.Path = string(newPath)
	return f, nil
}

func atoi(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
