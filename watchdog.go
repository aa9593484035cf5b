package lwt

// The watchdog: a goroutine that reports the Lwt thread held by one call
// into Go (a loop task or sync function that blocks stalls the whole Lwt
// loop). It runs on Go's threads and reads only the atomics below, which
// the Lwt thread writes on its way into and out of each outermost entry.
//
// A report must be true on an overloaded machine too: the time the Lwt
// thread spent waiting for a CPU (Linux's schedstat run-queue wait) is not
// counted. And an idle bridge must cost nothing: after two ticks without
// an entry the watchdog stops ticking until the next entry rouses it.

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

// stallAfter is how long the Lwt thread may be held by Go code in one entry
// before the watchdog reports it.
const stallAfter = 100 * time.Millisecond

var stallsSeen atomic.Int64

// stallReports receives the reports; tests read them.
var stallReports io.Writer = os.Stderr

type watchdog struct {
	entries atomic.Uint64          // bumped on the way into and out of an outermost entry: odd inside
	idle    atomic.Bool            // the watchdog sleeps until an entry rouses it
	rouse   chan struct{}          // capacity 1
	stop    chan struct{}          // closed to stop the watchdog
	holder  atomic.Pointer[holder] // what runs in the current entry, for the report
	tid     int                    // the Lwt thread's id, for its scheduler statistics
}

func newWatchdog() *watchdog {
	return &watchdog{rouse: make(chan struct{}, 1), stop: make(chan struct{}), tid: threadID()}
}

// holder names Go code that runs on the Lwt thread, for the report: by
// name, or by the line that spawned it (formatted only for a report).
type holder struct {
	name string
	pc   uintptr
}

func (h *holder) String() string {
	if h == nil {
		return "Go code"
	}
	if h.pc != 0 {
		f, _ := runtime.CallersFrames([]uintptr{h.pc}).Next()
		return fmt.Sprintf("the loop task spawned at %s:%d", f.File, f.Line)
	}
	return h.name
}

var holderJob = &holder{name: "a job posted to the Lwt thread (Post, OnLoop, Then, a settled call)"}

// enter and exit bracket an outermost entry; Lwt thread only. An entry
// names what it runs with hold, which holds until the entry ends: the
// plain load keeps the clearing off the hot path when nothing was named.
func (w *watchdog) enter() {
	if w.holder.Load() != nil {
		w.holder.Store(nil)
	}
	w.entries.Add(1)
	if w.idle.Load() && w.idle.CompareAndSwap(true, false) {
		select {
		case w.rouse <- struct{}{}:
		default:
		}
	}
}

func (w *watchdog) exit() { w.entries.Add(1) }

// hold names what runs now in the current entry, until the entry ends or
// something else is named. Lwt thread only.
func (w *watchdog) hold(what *holder) { w.holder.Store(what) }

// stopWatching stops the watchdog, once. Lwt thread only.
func (w *watchdog) stopWatching() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
}

// run reports, once per entry, an outermost entry that has held the Lwt
// thread for stallAfter: it samples every stallAfter/4 and times from its
// own first sighting, so a late tick never makes a short entry look long.
func (w *watchdog) run() {
	const period = stallAfter / 4
	tick := time.NewTicker(period)
	defer tick.Stop()
	var seen, reported, last uint64
	var since time.Time
	var waited time.Duration
	quiet := 0
	for {
		select {
		case <-w.stop:
			return
		case now := <-tick.C:
			n := w.entries.Load()
			if n%2 == 0 {
				if n != last {
					last, quiet = n, 0
					continue
				}
				if quiet++; quiet < 2 {
					continue
				}
				w.idle.Store(true)
				if w.entries.Load() == n { // no entry began since: sleep
					tick.Stop()
					select {
					case <-w.rouse:
					case <-w.stop:
						return
					}
					tick.Reset(period)
				}
				w.idle.Store(false)
				quiet = 0
				continue
			}
			quiet = 0
			if n != seen {
				seen, since, waited = n, now, runQueueWait(w.tid)
				continue
			}
			if n == reported {
				continue
			}
			held := now.Sub(since) - (runQueueWait(w.tid) - waited)
			if held >= stallAfter {
				reported = n
				stallsSeen.Add(1)
				fmt.Fprintf(stallReports, "lwt: the Lwt thread has been held for over %v by one call into Go, "+
					"not counting time it waited for a CPU: %v blocks the Lwt loop (itself, or OCaml code it called, "+
					"or the copying of a large value that crosses)\n", stallAfter, w.holder.Load())
			}
		}
	}
}
