package sessions

// Node is one session in a progress snapshot (PROTOCOL.md Progress).
type Node struct {
	Path    []string `json:"path"`
	Kind    Kind     `json:"kind"`
	Current int64    `json:"current"`
	Total   int64    `json:"total"`
	State   State    `json:"state"`
	// Sent is the records this session and its descendants sent.
	Sent  int64 `json:"-"`
	Depth int   `json:"-"`
}

// Snapshot lists the tree depth first. A session that never reported
// progress rolls its children up: current is the children finished, total
// the children opened; Sent always rolls up.
func (r *Run) Snapshot() []Node {
	var out []Node
	r.root.snapshot(0, &out)
	return out
}

func (s *Session) snapshot(depth int, out *[]Node) (sent int64) {
	s.mu.Lock()
	n := Node{Path: s.Path(), Kind: s.kind, Current: s.current, Total: s.total, State: s.state, Sent: s.sent, Depth: depth}
	kids := append([]*Session(nil), s.kids...)
	s.mu.Unlock()
	i := len(*out)
	*out = append(*out, n)
	var finished int64
	for _, k := range kids {
		n.Sent += k.snapshot(depth+1, out)
		if k.State() != Running {
			finished++
		}
	}
	if n.Total == 0 && len(kids) > 0 {
		n.Current, n.Total = finished, int64(len(kids))
	}
	(*out)[i] = n
	return n.Sent
}
