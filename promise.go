package lwt

// Promise: a one-shot result that goroutines block on and loop tasks
// suspend on. Settle and every read are safe from any goroutine; a task's
// await and the Then callbacks are woken on the Lwt thread (directly when
// the promise settles there, through a posted job otherwise). A promise is
// settled once: settled goes true under mu after value and err are set, and
// a lock-free read that sees it true sees them.

import (
	"context"
	"sync"
	"sync/atomic"
)

// Promise is a one-shot result of type T: a value or an error, settled once,
// from OCaml or from Go. Any number of goroutines and loop tasks may await it.
type Promise[T any] struct {
	settled atomic.Bool // set after value and err, under mu
	mu      sync.Mutex
	value   T
	err     error
	done    chan struct{} // made on demand, closed when settled
	waiters waitList      // run on the Lwt thread when settled
	// cancel asks whoever settles the promise to stop (Cancel); set once,
	// before the promise is shared.
	cancel func()
}

// waiter is a task suspended in Await, or a Then callback (fn, and abort
// if fn cannot be posted).
type waiter struct {
	t     *task
	seq   uint64
	l     *loop
	fn    func()
	abort func(error)
}

// waitList keeps its first waiter inline: most promises have exactly one,
// and a task's await then allocates nothing.
type waitList struct {
	n     int
	first waiter
	rest  []waiter
}

func (w *waitList) add(x waiter) {
	if w.n == 0 {
		w.first = x
	} else {
		w.rest = append(w.rest, x)
	}
	w.n++
}

func (w *waitList) at(i int) waiter {
	if i == 0 {
		return w.first
	}
	return w.rest[i-1]
}

// drop removes the await numbered seq of task t, if it is there.
func (w *waitList) drop(t *task, seq uint64) {
	for i := range w.n {
		if x := w.at(i); x.t == t && x.seq == seq {
			if i == 0 {
				if len(w.rest) > 0 {
					w.first = w.rest[0]
					w.rest = w.rest[1:]
				} else {
					w.first = waiter{}
				}
			} else {
				w.rest = append(w.rest[:i-1], w.rest[i:]...)
			}
			w.n--
			return
		}
	}
}

// NewPromise returns a pending promise and the Resolver that settles it.
func NewPromise[T any]() (*Promise[T], Resolver[T]) {
	p := new(Promise[T])
	return p, Resolver[T]{p}
}

// Resolved returns a promise already fulfilled with v.
func Resolved[T any](v T) *Promise[T] {
	p := new(Promise[T])
	p.settle(v, nil, false)
	return p
}

// Rejected returns a promise already rejected with err; a nil err is
// replaced by an error saying so, as Resolver.Reject does.
func Rejected[T any](err error) *Promise[T] {
	if err == nil {
		err = errNilReject
	}
	p := new(Promise[T])
	var zero T
	p.settle(zero, err, false)
	return p
}

// Resolver settles its promise. Safe from any goroutine.
type Resolver[T any] struct{ p *Promise[T] }

// Resolve fulfils the promise with v. It returns ErrAlreadySettled, and
// changes nothing, if the promise was settled before.
func (r Resolver[T]) Resolve(v T) error { return r.p.settle(v, nil, onLoopThread()) }

// Reject rejects the promise with err (which must not be nil). It returns
// ErrAlreadySettled, and changes nothing, if the promise was settled before.
func (r Resolver[T]) Reject(err error) error {
	if err == nil {
		err = errNilReject // as Rejected does
	}
	var zero T
	return r.p.settle(zero, err, onLoopThread())
}

// settle records the result and wakes the waiters: directly when called on
// the Lwt thread (onLoop), else through the executor.
func (p *Promise[T]) settle(v T, err error, onLoop bool) error {
	p.mu.Lock()
	if p.settled.Load() {
		p.mu.Unlock()
		return ErrAlreadySettled
	}
	p.value, p.err = v, err
	p.settled.Store(true)
	ws, done := p.waiters, p.done
	p.waiters = waitList{}
	p.mu.Unlock()
	if done != nil {
		close(done)
	}
	for i := range ws.n {
		switch w := ws.at(i); {
		case onLoop && w.t != nil:
			w.t.wake(w.seq)
		case onLoop:
			runJob(w.fn)
		case w.t != nil:
			t, seq := w.t, w.seq
			w.l.post(func() { t.wake(seq) })
		default:
			if err := w.l.post(w.fn); err != nil {
				w.abort(err)
			}
		}
	}
	return nil
}

// Cancel asks whatever settles the promise to stop, if the promise has
// such a source and is still pending: an OCaml promise (Lwt_interop.Ty.promise)
// is Lwt.cancel'led; a call made by Func.Go ends with context.Canceled, as
// if its ctx had ended, and its OCaml promise is Lwt.cancel'led. A promise
// of NewPromise, Resolved, Rejected, OnLoop or Then has none: Cancel does
// nothing. Safe from any goroutine.
func (p *Promise[T]) Cancel() {
	if p.cancel != nil && !p.settled.Load() {
		p.cancel()
	}
}

// Done returns a channel closed when the promise is settled.
func (p *Promise[T]) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		p.done = make(chan struct{})
		if p.settled.Load() {
			close(p.done)
		}
	}
	return p.done
}

// Result returns the settled value and error, and whether the promise is
// settled at all. It never waits.
func (p *Promise[T]) Result() (v T, err error, ok bool) {
	if !p.settled.Load() {
		return v, nil, false
	}
	return p.value, p.err, true
}

// Await waits for the promise and returns its value or error, or ctx's error
// if ctx ends first.
//
// In a loop task it suspends the task and lets the Lwt loop run (that
// includes code a task runs at once, such as OnLoop's fn or a Then callback
// called from the task); in a goroutine it blocks. Anywhere else on the Lwt
// thread (a sync function, a job, OCaml code called by a task) waiting would
// stall the event loop, so Await returns ErrWouldBlock unless the promise
// is already settled.
func (p *Promise[T]) Await(ctx context.Context) (T, error) {
	unwindIfStopped()
	if v, err, ok := p.Result(); ok {
		return v, err
	}
	if onLoopThread() {
		l := current.Load()
		if l == nil || l.running == nil || l.depth != 1 {
			var zero T
			return zero, ErrWouldBlock
		}
		return p.awaitInTask(ctx, l.running)
	}
	select {
	case <-p.Done():
		return p.value, p.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

func (p *Promise[T]) awaitInTask(ctx context.Context, t *task) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	t.seq++
	seq := t.seq
	p.mu.Lock()
	if p.settled.Load() {
		p.mu.Unlock()
		return p.value, p.err
	}
	p.waiters.add(waiter{t: t, seq: seq, l: t.l})
	p.mu.Unlock()

	t.ownCtx = ctx == t.ctx
	var unwatch func() bool
	if !t.ownCtx && ctx.Done() != nil {
		unwatch = context.AfterFunc(ctx, func() { t.l.post(func() { t.wake(seq) }) })
	}
	resumed := t.suspend()
	t.ownCtx = false
	if unwatch != nil {
		unwatch()
	}
	if v, err, ok := p.Result(); ok {
		return v, err
	}
	p.dropWaiter(t, seq)
	if !resumed {
		return zero, ErrClosed
	}
	return zero, ctx.Err()
}

func (p *Promise[T]) dropWaiter(t *task, seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waiters.drop(t, seq)
}

// Then returns a promise of fn's result, where fn gets p's value and error
// on the Lwt thread once p is settled (at once if p is settled and Then is
// called on the Lwt thread): like Lwt's bind, for chaining. A panic in fn
// rejects the returned promise with a *PanicError. It is rejected with
// ErrNotStarted or ErrClosed if there is no Lwt loop to run fn, and with
// ErrClosed if p settles after the bridge shut down (fn then never runs).
func Then[T, U any](p *Promise[T], fn func(T, error) (U, error)) *Promise[U] {
	l, err := activeLoop()
	if err != nil {
		return Rejected[U](err)
	}
	if l.isClosed() {
		return Rejected[U](ErrClosed)
	}
	q := new(Promise[U])
	run := func() {
		v, err := recovered(func() (U, error) { return fn(p.value, p.err) })
		q.settle(v, err, true)
	}
	abort := func(err error) {
		var zero U
		q.settle(zero, err, onLoopThread())
	}
	p.mu.Lock()
	if !p.settled.Load() {
		p.waiters.add(waiter{l: l, fn: run, abort: abort})
		p.mu.Unlock()
		return q
	}
	p.mu.Unlock()
	if onLoopThread() {
		run()
	} else if err := l.post(run); err != nil {
		abort(err)
	}
	return q
}
