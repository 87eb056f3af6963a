package queue

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// ErrDiskFull is returned (wrapped, with the figures) by Enqueue with the
// Refuse policy and by Retry while the store's filesystem has less free
// space than Options.MinFreeBytes, or ran out of it. Nothing of that request
// was written; delivery goes on, and so do deletes.
var ErrDiskFull = errors.New("the disk holding the queue is full")

// reserveName is the file, in the store's directory, that holds the disk
// reserve. Pebble ignores names it did not make.
const reserveName = "courier-reserve"

// diskRefresh is how long a free-space figure is trusted while enqueues
// are admitted against it; other programs fill the disk too.
const diskRefresh = time.Second

// diskCost is how many bytes of disk an enqueued byte may take before its
// delivery frees them: the WAL, then the sstable its memtable flushes to.
const diskCost = 2

// diskGuard keeps Pebble away from ENOSPC, which it cannot survive: a
// failed WAL write makes it call its fatal hook, and a failed flush leaves
// writes stalled for good. Two layers do it:
//
//   - admission: new data is refused while statfs says less than minFree is
//     left (deletes, settles and small writes go on), so the disk is
//     normally never filled by the queue itself;
//   - a reserve: a preallocated file, deleted when a write through Pebble's
//     filesystem hits ENOSPC anyway (another program filled the disk);
//     Pebble's vfs.OnDiskFull retries that write once, into the space the
//     reserve gave back, and from then on the queue refuses new data until
//     there is room for minFree and a new reserve.
type diskGuard struct {
	fs          vfs.FS // not wrapped by OnDiskFull: the reserve is ours
	dir         string
	reservePath string
	reserveSize int64
	minFree     int64
	log         zerolog.Logger

	mu          sync.Mutex
	avail       int64 // free bytes at checkedAt
	spent       int64 // admitted since checkedAt, times diskCost
	checkedAt   time.Time
	unsupported bool // statfs does not work here (an in-memory FS)
	reserveHeld bool
	full        bool  // new data refused
	why         error // why, while full; wraps ErrDiskFull
	releases    int   // reserves released on ENOSPC
}

func newDiskGuard(fs vfs.FS, dir string, reserve, minFree int64, log zerolog.Logger) *diskGuard {
	g := &diskGuard{fs: fs, dir: dir, reservePath: fs.PathJoin(dir, reserveName), reserveSize: reserve, minFree: minFree, log: log}
	if st, err := fs.Stat(g.reservePath); err == nil && st.Size() >= reserve {
		g.reserveHeld = true
	}
	g.mu.Lock()
	g.refreshLocked()
	g.mu.Unlock()
	return g
}

// onDiskFull is Pebble's vfs.OnDiskFull callback: a write hit ENOSPC.
// Pebble blocks further writes until it returns, then retries the write.
func (g *diskGuard) onDiskFull() {
	g.mu.Lock()
	released := g.reserveHeld
	if released {
		if err := g.fs.Remove(g.reservePath); err != nil {
			g.log.Error().Err(err).Str("reserve", g.reservePath).Msg("cannot delete the disk reserve")
			released = false
		} else {
			g.reserveHeld = false
			g.releases++
		}
	}
	g.setFullLocked(fmt.Errorf("%w: a write under %s failed with ENOSPC", ErrDiskFull, g.dir))
	g.mu.Unlock()
	if released {
		g.log.Error().Int64("reserve_bytes", g.reserveSize).Str("dir", g.dir).
			Msg("disk full: released the disk reserve so that delivery can go on deleting; new events are refused until there is room again")
	} else {
		g.log.Error().Str("dir", g.dir).
			Msg("disk full and no reserve left to release: free space on this filesystem now, or the store's next write fails")
	}
}

// admit reserves room for n bytes of new data, or says why there is none.
func (g *diskGuard) admit(n int64) error {
	g.mu.Lock()
	need := n * diskCost
	if g.full || g.avail-g.spent-need < g.minFree || time.Since(g.checkedAt) > diskRefresh {
		g.refreshLocked()
	}
	defer g.mu.Unlock()
	switch {
	case g.full:
		return g.why
	case !g.unsupported && g.avail-g.spent-need < g.minFree:
		g.setFullLocked(fmt.Errorf("%w: %d bytes free under %s, and %d more would leave less than the %d kept free (queue.min_free_bytes)",
			ErrDiskFull, g.avail-g.spent, g.dir, need, g.minFree))
		return g.why
	}
	g.spent += need
	return nil
}

// err is nil while new data is taken, else why not.
func (g *diskGuard) err() error {
	g.mu.Lock()
	if g.full && time.Since(g.checkedAt) > diskRefresh {
		g.refreshLocked()
	}
	defer g.mu.Unlock()
	if g.full {
		return g.why
	}
	return nil
}

// isFull says whether new data is refused, from the last figures.
func (g *diskGuard) isFull() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.full
}

// freeBytes is the free space at the last check; -1 when unknown.
func (g *diskGuard) freeBytes() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.unsupported {
		return -1
	}
	return g.avail - g.spent
}

// refreshLocked reads the free space and decides whether new data is
// taken. A spent reserve is made again before anything is taken, so that
// the next ENOSPC finds one.
func (g *diskGuard) refreshLocked() {
	g.checkedAt, g.spent = time.Now(), 0
	du, err := g.fs.GetDiskUsage(g.dir)
	switch {
	case errors.Is(err, vfs.ErrUnsupported):
		g.unsupported = true
	case err != nil:
		// Keep the last figures: a statfs that fails says nothing about
		// the space left.
		g.log.Warn().Err(err).Str("dir", g.dir).Msg("cannot read the free space of the queue's filesystem")
		return
	default:
		g.avail = int64(min(du.AvailBytes, 1<<62))
	}
	// Refused for want of space, new data is taken again only past a
	// margin, so that readiness does not flap with every delivered batch.
	margin := int64(0)
	if g.full {
		margin = max(g.reserveSize, 1<<20)
	}
	if !g.reserveHeld && g.reserveSize > 0 {
		if !g.unsupported && g.avail < g.minFree+g.reserveSize {
			g.setFullLocked(fmt.Errorf("%w: %d bytes free under %s, less than the %d kept free (queue.min_free_bytes) and the %d-byte reserve (queue.disk_reserve_bytes)",
				ErrDiskFull, g.avail, g.dir, g.minFree, g.reserveSize))
			return
		}
		if err := g.makeReserve(); err != nil {
			g.setFullLocked(fmt.Errorf("%w: cannot write the %d-byte disk reserve under %s: %v", ErrDiskFull, g.reserveSize, g.dir, err))
			return
		}
		g.reserveHeld, margin = true, 0
		if du, err := g.fs.GetDiskUsage(g.dir); err == nil {
			g.avail = int64(min(du.AvailBytes, 1<<62))
		}
	}
	if !g.unsupported && g.avail < g.minFree+margin {
		if !g.full {
			g.setFullLocked(fmt.Errorf("%w: %d bytes free under %s, less than the %d kept free (queue.min_free_bytes)",
				ErrDiskFull, g.avail, g.dir, g.minFree))
		}
		return
	}
	if g.full {
		g.full, g.why = false, nil
		g.log.Warn().Int64("free_bytes", g.avail).Str("dir", g.dir).Msg("disk has room again: new events are taken")
	}
}

func (g *diskGuard) setFullLocked(why error) {
	if !g.full {
		g.log.Error().Str("dir", g.dir).Msg(why.Error() + "; new events are refused, delivery goes on")
	}
	g.full, g.why = true, why
}

// makeReserve writes the reserve file: allocated with fallocate where the
// filesystem has it, else written with bytes that do not compress, so that
// a compressing filesystem stores them too.
func (g *diskGuard) makeReserve() error {
	f, err := g.fs.Create(g.reservePath, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	err = allocate(f, g.reserveSize)
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err != nil {
		_ = g.fs.Remove(g.reservePath)
	}
	return err
}

func allocate(f vfs.File, n int64) error {
	if fd := f.Fd(); fd != vfs.InvalidFd {
		if err := fallocate(fd, n); err == nil || vfs.IsNoSpaceError(err) {
			return err
		}
	}
	buf := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(buf); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			buf[i+j] = byte(v >> (8 * j))
		}
	}
	for n > 0 {
		w := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:w]); err != nil {
			return err
		}
		n -= w
	}
	return nil
}

// Defaults of Options.MinFreeBytes and Options.DiskReserveBytes.
const (
	defaultMinFree     = 64 << 20
	defaultDiskReserve = 16 << 20
)

func diskDefault(v, def int64) int64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// admitDisk checks that the disk has room for r. A Refuse producer is
// answered ErrDiskFull at once; a Wait producer is left to park, and a
// diskTick is scheduled to look again.
func (a *queueActor) admitDisk(ctx actor.Context, r *enqueueReq) bool {
	err := a.st.disk.admit(r.bytes)
	if err == nil {
		return true
	}
	if r.policy == Refuse {
		a.metrics.refused.Inc()
		r.reply <- err
		return false
	}
	a.scheduleDiskTick(ctx)
	return false
}

// scheduleDiskTick has the actor look at the disk again in a while: parked
// producers are woken by freed quota, and a disk that gets room frees none.
func (a *queueActor) scheduleDiskTick(ctx actor.Context) {
	if a.diskTickQueued || a.closed {
		return
	}
	a.diskTickQueued = true
	self := ctx.Self()
	time.AfterFunc(diskRefresh, func() { a.sys.Root.Send(self, &diskTick{}) })
}

func (a *queueActor) onDiskTick(ctx actor.Context) {
	a.diskTickQueued = false
	if len(a.waiters) == 0 || a.closed {
		return
	}
	if a.st.disk.err() != nil {
		a.scheduleDiskTick(ctx)
		return
	}
	a.wakeWaiters(ctx)
}
