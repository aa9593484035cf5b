// Package lwt runs Go beside an OCaml Lwt event loop in one process, each
// side awaiting the other.
//
// The OCaml program links this package (through a Go main package built
// with -buildmode=c-archive) and the OCaml library lwt_interop (stubs.c,
// lwt_interop.ml), and calls Lwt_interop.init. From then on:
//
//   - OCaml calls the Go functions registered with [Register] (a goroutine
//     per call), [RegisterTask] (a loop task) or [RegisterSync] (directly),
//     and gets an 'a Lwt.t, or the value for a sync function.
//   - Go calls OCaml through a [*Func]: a closure OCaml passed, or a function
//     OCaml registered by name ([Lookup]). [Func.Call] waits for the Lwt
//     promise; [Func.Go] returns a [Promise].
//   - Loop tasks ([Spawn], [RegisterTask]) are Go code running on the Lwt
//     thread as coroutines. Awaiting inside a task suspends it and lets the
//     Lwt loop run; the task resumes when the promise settles. A task may
//     call OCaml directly. Like an Lwt callback, it must never block.
//   - Goroutines run on Go's own threads. Awaiting blocks them; their calls
//     into OCaml are posted to the Lwt thread ([Post], [OnLoop]).
//
// The Lwt thread is the OS thread that runs Lwt_main.run. Only it touches
// OCaml values: everything that crosses is copied or held across. OCaml
// declares each type once (Lwt_interop.Ty), and Go's type must match it
// when OCaml binds the function or Go looks it up, by kind: bool, int and
// int64 (OCaml's int, or int64 for all 64 bits), int32, byte (char),
// float64, string, []byte; a
// pointer is an option, a slice a list or array, a struct a record (fields
// by name, or an `lwt:"name"` tag) or a tuple ([Pair], [Tuple3], [Tuple4]),
// an interface declared with [RegisterVariant] a variant, [Result] a
// result. [Func] and [Callback] are functions, [Promise] a promise, both
// ways; [Handle] and [Value] hold a value of the other side. A mismatch is
// an error naming both sides. Errors keep their kind both ways
// ([OCamlError], [RegisterError]); functions of several arguments take an
// [Args2] ([Fn2]). The README has the table of types, and the rules;
// cmd/lwt-bindgen writes the OCaml side from the Go one.
package lwt

/*
// Whether this OS thread is the Lwt thread: set by init, cleared by shutdown.
static __thread int lwt_loop_thread;
static void lwt_set_loop_thread(int on) { lwt_loop_thread = on; }
static int lwt_is_loop_thread(void) { return lwt_loop_thread; }

#include "ocaml_api.h"
static void lwt_closed(void) { if (lwt_api) { lwt_enter(); lwt_api->closed(); } } // none when simulated
*/
import "C"

import (
	"context"
	"errors"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"lwt/internal/getg"
)

var (
	// ErrNotStarted: the bridge is used before Lwt_interop.init.
	ErrNotStarted = errors.New("lwt: not started (call Lwt_interop.init on the Lwt thread first)")
	// ErrClosed: the bridge was shut down, or a task was stopped by it.
	ErrClosed = errors.New("lwt: shut down")
	// ErrAlreadySettled: a promise was resolved or rejected a second time.
	ErrAlreadySettled = errors.New("lwt: promise already settled")
	// ErrWouldBlock: Await or Func.Call on the Lwt thread outside a loop
	// task, where waiting would stall the Lwt event loop.
	ErrWouldBlock = errors.New("lwt: waiting on the Lwt thread outside a loop task would block the event loop (use a task, Then, Func.Go, or a goroutine)")

	// ErrReleased: an OCaml function or value (Func, Value) used after its
	// Release.
	ErrReleased = errors.New("lwt: OCaml value used after Release")

	errNilReject      = errors.New("lwt: promise rejected with a nil error")
	errShutdownOnLoop = errors.New("lwt: Shutdown on the Lwt thread would wait for itself; call it from a goroutine, or Lwt_interop.shutdown from OCaml")
	errTaskStopped    = errors.New("lwt: Await in a task stopped by shutdown")
)

// current is the bridge's executor: nil before the first init, closed after
// a shutdown until the next init.
var current atomic.Pointer[loop]

func activeLoop() (*loop, error) {
	l := current.Load()
	if l == nil {
		return nil, ErrNotStarted
	}
	return l, nil
}

// onLoopThread reports whether the caller runs on the Lwt thread. In a loop
// task it compares the running goroutine with the task's coroutine, which
// runs on the Lwt thread only (a few instructions); elsewhere, or on an
// architecture without getg's assembly, it asks C (a call from Go into C:
// ~150 instructions).
func onLoopThread() bool {
	if l := current.Load(); l != nil && l.inRunningTask() {
		return true
	}
	return C.lwt_is_loop_thread() != 0
}

// inRunningTask reports whether the caller is l's running task (false
// where getg has no assembly): onLoopThread's fast path, which inlines.
func (l *loop) inRunningTask() bool {
	g := getg.G()
	return g != 0 && l.runningG.Load() == g
}

func setLoopThread(on bool) {
	if on {
		C.lwt_set_loop_thread(1)
	} else {
		C.lwt_set_loop_thread(0)
	}
}

// Post runs fn on the Lwt thread, soon and in posting order. Safe from any
// goroutine; never blocks. A panic in fn is reported on stderr.
func Post(fn func()) error {
	l, err := activeLoop()
	if err != nil {
		return err
	}
	return l.post(fn)
}

// OnLoop runs fn on the Lwt thread (at once when called there) and returns
// a promise of its result. A panic in fn rejects the promise with a
// *PanicError.
func OnLoop[T any](fn func() (T, error)) *Promise[T] {
	l, err := activeLoop()
	if err != nil {
		return Rejected[T](err)
	}
	p := new(Promise[T])
	run := func() {
		v, err := recovered(fn)
		p.settle(v, err, true)
	}
	if onLoopThread() {
		run()
	} else if err := l.post(run); err != nil {
		return Rejected[T](err)
	}
	return p
}

// Spawn runs fn as a loop task on the Lwt thread and returns a promise of
// its result. Await inside fn suspends the task; the cancellation of ctx
// wakes a pending Await with ctx's error. Called on the Lwt thread outside
// a task, the task runs at once until its first Await; from a task, once
// that task awaits or ends; from a goroutine, it is posted.
//
// A task must not block (no channel waits, locks held long, blocking I/O)
// and must not call runtime.Goexit. A panic in fn rejects the promise with
// a *PanicError; shutdown stops the task and its pending Await returns
// ErrClosed.
func Spawn[T any](ctx context.Context, fn func(ctx context.Context) (T, error)) *Promise[T] {
	l, err := activeLoop()
	if err != nil {
		return Rejected[T](err)
	}
	p := new(Promise[T])
	var pc [1]uintptr
	runtime.Callers(2, pc[:])
	t := &task{ctx: ctx, holder: &holder{pc: pc[0]}}
	t.body = func() {
		v, err := recovered(func() (T, error) { return fn(ctx) })
		p.settle(v, err, true)
	}
	t.abort = func(err error) {
		var zero T
		p.settle(zero, err, true)
	}
	if onLoopThread() {
		l.spawn(t)
	} else if err := l.post(func() { l.spawn(t) }); err != nil {
		return Rejected[T](err)
	}
	return p
}

// recovered calls fn, turning a panic into a *PanicError (and the unwinding
// of a task stopped by shutdown into ErrClosed).
func recovered[T any](fn func() (T, error)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			if r == errTaskStopped {
				err = ErrClosed
				return
			}
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return fn()
}

// defaultGrace is how long a shutdown waits for the Go calls in flight when
// nothing says otherwise: Lwt_interop.shutdown's default.
const defaultGrace = time.Second

// Shutdown shuts the bridge down from Go, as Lwt_interop.shutdown does from
// OCaml. The Go functions OCaml called and that still run see their context
// cancelled, and their results still reach OCaml until ctx ends; then the
// calls left are rejected with ErrClosed, loop tasks are stopped (a pending
// Await returns ErrClosed), Go's calls into OCaml fail with ErrClosed, the
// OCaml values Go held are released and the notifier is closed. Every use
// of the bridge after it fails with ErrClosed, until OCaml calls
// Lwt_interop.init again.
//
// Call it from a goroutine: it runs on the Lwt thread and waits for it.
// It returns ErrClosed if the bridge was already shut down. If ctx ends
// before the Lwt thread gets to it, Shutdown returns ctx's error, and the
// Lwt thread still shuts the bridge down when it does, with no grace left;
// if ctx gave the grace period of the shutdown under way, Shutdown returns
// once that has ended.
// A ctx without a deadline gives a grace period of one second (as
// Lwt_interop.shutdown does): a Go call that calls Shutdown is itself in
// flight, and so waits that long. The Lwt loop does not run during the
// grace period: a Go call waiting for an OCaml promise that needs it ends
// through its cancelled context.
func Shutdown(ctx context.Context) error {
	l, err := activeLoop()
	if err != nil {
		return err
	}
	return l.shutdownFromGo(ctx)
}

// shutdownFromGo is Shutdown of l. Any goroutine.
func (l *loop) shutdownFromGo(ctx context.Context) error {
	if onLoopThread() {
		return errShutdownOnLoop
	}
	done := make(chan error, 1)
	begun := make(chan struct{}) // closed if the shutdown runs with ctx's grace period
	if err := l.post(func() { l.requestShutdown(ctx, done, begun) }); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case <-begun: // ctx's end ended the grace period: the shutdown ends soon
			return <-done
		default:
			return ctx.Err()
		}
	}
}

// requestShutdown queues a Shutdown for the end of the running runPending,
// or for the end of the shutdown under way. The first request's ctx gives
// the grace period, unless a shutdown is under way. Lwt thread only.
func (l *loop) requestShutdown(ctx context.Context, done chan<- error, begun chan struct{}) {
	if len(l.shutdownWaiters) == 0 && !l.stopping {
		l.shutdownCtx, l.shutdownBegun = ctx, begun
	}
	l.shutdownWaiters = append(l.shutdownWaiters, done)
}

// shutdownBridge shuts the bridge down, with ctx's grace period; it closes
// begun (if not nil) as it begins. Lwt thread, outermost entry, not inside
// a job (the grace period runs jobs); once.
func shutdownBridge(l *loop, ctx context.Context, begun chan struct{}) error {
	if l.stopping || l.isClosed() {
		return nil
	}
	if l.depth > 1 || inDeferredCall() {
		return errors.New("lwt: shutdown from OCaml code called by Go; call it from the Lwt loop")
	}
	l.stopping = true
	if begun != nil {
		close(begun)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultGrace)
		defer cancel()
	}
	l.wd.stopWatching() // the wait below is no stall
	l.cancelAllInCalls()
	for l.inCalls.live.Load() > 0 && ctx.Err() == nil {
		l.runPending() // the calls' results, and what their tasks need to finish
		// OCaml's other threads and domains run meanwhile.
		if C.lwt_sleep(C.int64_t(time.Millisecond)) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	C.lwt_closed() // OCaml stops watching the notifier before it closes
	err := l.shutdown(func() {
		l.rejectAllInCalls(ErrClosed)
		l.outCalls.abandonAll(ErrClosed)
	})
	l.freeAllRoots() // OCaml's roots: the rest goes with l
	setAPI(nil)      // nothing calls OCaml until the next init (a Simulate finds no OCaml)
	for _, done := range l.shutdownWaiters {
		done <- err
	}
	l.shutdownWaiters = nil
	return err
}

// Stats counts what the bridge holds now; after shutdown every count is 0
// but Handles (OCaml's handles outlive the bridge) and Stalls (a running
// total).
type Stats struct {
	Roots   int // OCaml values held by Go (closures, opaque values)
	Handles int // Go values held by OCaml (Handle), freed by OCaml's GC
	Jobs    int // posted jobs not yet run
	Tasks   int // loop tasks spawned and not finished
	Calls   int // calls between the two sides in flight
	// Stalls counts, since the process started, the times the Lwt thread
	// ran Go code for over 100ms in one go (each is also reported on
	// stderr): a loop task or sync function that blocks.
	Stalls int
}

// CurrentStats returns the bridge's counts. Safe from any goroutine.
func CurrentStats() Stats {
	s := Stats{Handles: int(handlesLive.Load()), Stalls: int(stallsSeen.Load())}
	if l := current.Load(); l != nil {
		s.Roots, s.Tasks = int(l.rootsLive.Load()), int(l.tasksLive.Load())
		s.Calls = int(l.inCalls.live.Load() + l.outCalls.inFlight.Load())
		l.mu.Lock()
		s.Jobs = len(l.jobs)
		l.mu.Unlock()
	}
	return s
}
