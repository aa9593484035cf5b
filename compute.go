package lwt

// Compute: admission of CPU-bound Go work, so that it never holds every P
// of Go's scheduler. Any goroutine but the Lwt thread. running counts the
// Compute calls whose fn runs; a finishing one hands its slot to the first
// waiter, if the limit still allows it.

import (
	"context"
	"runtime"
	"slices"
	"sync"
)

var compute struct {
	mu      sync.Mutex
	running int
	waiters []chan struct{} // closed when given a slot; first come, first served
}

// computeLimit is how many Compute calls may run at once: one P fewer than
// GOMAXPROCS, and at least one.
func computeLimit() int { return max(1, runtime.GOMAXPROCS(0)-1) }

// Compute runs fn, a CPU-bound computation, once fewer than GOMAXPROCS-1
// other Compute calls run (one at least), and returns its result, or ctx's
// error if ctx ends while it waits. One P of Go's scheduler then stays free
// of such work for the Lwt thread, whose every entry into Go (each call
// between OCaml and Go) needs a P, and for the short goroutines of the
// functions OCaml calls: CPU-bound goroutines on every P delay both by Go's
// time slices of 10 ms (make bench: latency/… and app/cohttp/loaded/…
// against app/cohttp/computed/…). With GOMAXPROCS at 1 there is no P to
// spare: one computation runs, on the only P. The limit follows GOMAXPROCS
// as it changes. Compute must not be nested (fn calling Compute): with every
// slot held by outer calls, the inner ones wait for ever. A panic in fn
// frees its slot and goes on. On the Lwt thread, where waiting (and
// computing) would stall the event loop, it returns ErrWouldBlock.
func Compute[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	var zero T
	if onLoopThread() {
		return zero, ErrWouldBlock
	}
	if err := acquireCompute(ctx); err != nil {
		return zero, err
	}
	defer releaseCompute()
	return fn()
}

func acquireCompute(ctx context.Context) error {
	compute.mu.Lock()
	if compute.running < computeLimit() && len(compute.waiters) == 0 {
		compute.running++
		compute.mu.Unlock()
		return nil
	}
	given := make(chan struct{})
	compute.waiters = append(compute.waiters, given)
	compute.mu.Unlock()
	select {
	case <-given:
		return nil
	case <-ctx.Done():
		compute.mu.Lock()
		if i := slices.Index(compute.waiters, given); i >= 0 {
			compute.waiters = slices.Delete(compute.waiters, i, i+1)
			compute.mu.Unlock()
			return ctx.Err()
		}
		compute.mu.Unlock()
		releaseCompute() // given a slot meanwhile: pass it on
		return ctx.Err()
	}
}

// releaseCompute frees the slot and gives the free ones to the first
// waiters: one, or more if GOMAXPROCS went up, none if it went down.
func releaseCompute() {
	compute.mu.Lock()
	defer compute.mu.Unlock()
	compute.running--
	for limit := computeLimit(); len(compute.waiters) > 0 && compute.running < limit; compute.running++ {
		close(compute.waiters[0])
		compute.waiters = compute.waiters[1:]
	}
}
