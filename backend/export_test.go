package backend

import "time"

// SetNow replaces the clock that spaces the 401 log line.
func SetNow(c *Client, now func() time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
}
