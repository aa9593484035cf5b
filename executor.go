package lwt

// The executor: one bridge (loop), its job queue and its loop tasks. post
// and kick are safe from any goroutine; everything else runs on the Lwt
// thread, in an entry from C bracketed by arrive and leave. What holds:
// only the outermost entry (depth 1) creates, resumes or stops a task (the
// coroutine rule, see arrive); a job posted is run once, in order, within
// the budget of one runPending; the notifier is written once per idle
// queue (woken), under mu, so that shutdown cannot close it meanwhile.

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"lwt/internal/getg"
)

// budget bounds the jobs and task steps one run of runPending performs, so
// that a busy Go side cannot starve the Lwt loop. Work left over re-arms the
// notifier and runs on the loop's next turn.
const budget = 256

// loop is one bridge: the executor bound to one Lwt thread and everything
// the bridge holds, made by init and dropped whole by shutdown. mu guards
// the fields above it is declared with, shared with every goroutine; closed
// is set under mu and read anywhere; wd is the watchdog's (watchdog.go);
// the others belong to the Lwt thread alone.
type loop struct {
	mu     sync.Mutex
	jobs   []func() // posted, not yet run
	woken  bool     // the notifier was written and runPending has not yet drained it
	closed atomic.Bool
	gone   chan struct{} // closed with closed set: streams' producers stop waiting
	notify *notifier

	wd        *watchdog
	unwinding atomic.Bool // stopAll has begun: a stopped task's next Await or Call unwinds it

	// Lwt thread only.
	depth   int   // OCaml→Go entries now on the Lwt thread's stack
	running *task // the task whose coroutine runs now
	// runningG is running's goroutine (getg.G) while its coroutine is alive,
	// else 0: any goroutine reads it, for onLoopThread's fast path.
	runningG atomic.Uintptr
	ready    []*task            // tasks to resume before the outermost entry returns
	resuming bool               // OCaml's settlement of a call resumes a task now (mayDefer)
	live     map[*task]struct{} // tasks spawned and not yet finished
	batch    []func()           // scratch for runPending

	// The calls in flight each way (register.go, func.go) and the OCaml
	// values Go holds.
	inCalls  inCallTable
	outCalls callTable
	roots    map[*ocamlRoot]struct{}
	lookedUp lookedUpFuncs // has its own lock

	// What the bridge holds, for CurrentStats: any goroutine reads them
	// (with outCalls.inFlight).
	rootsLive, tasksLive atomic.Int64

	// Shutdown, Lwt thread only: requests from Go's Shutdown wait for the
	// end of the runPending that received them; stopping is set meanwhile.
	stopping        bool
	shutdownCtx     context.Context // the first request's
	shutdownWaiters []chan<- error
	shutdownBegun   chan struct{} // the first request's: closed as its shutdown begins
}

func newLoop() (*loop, error) {
	n, err := newNotifier()
	if err != nil {
		return nil, fmt.Errorf("lwt: creating the notifier: %w", err)
	}
	return &loop{notify: n, gone: make(chan struct{}), live: make(map[*task]struct{}), wd: newWatchdog(),
		roots: make(map[*ocamlRoot]struct{})}, nil
}

// post queues job to run on the Lwt thread. Safe from any goroutine; never
// blocks. Only the post that finds the queue idle writes the notifier.
//
// The wake happens under mu, so that shutdown cannot close the notifier
// (and the OS reuse its fd) between a post and its wake.
func (l *loop) post(job func()) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return ErrClosed
	}
	l.jobs = append(l.jobs, job)
	if !l.woken {
		l.woken = true
		return l.notify.wake()
	}
	return nil
}

// kick makes the Lwt loop call runPending again soon, for work left over by
// a budget.
func (l *loop) kick() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.woken && !l.closed.Load() {
		l.woken = true
		l.notify.wake()
	}
}

// arrive and leave bracket every OCaml→Go entry on the Lwt thread:
//
//	l.arrive()
//	defer l.leave() // or l.leaveGuarded(errOut), which reports a panic first
//
// The coroutine rule: every cgo callback adds a thread lock, and Go throws
// (unrecoverably) when a coroutine is switched at another lock depth than
// the one it was created at; so only the outermost entry creates, resumes
// or stops tasks, in step and leave.
func (l *loop) arrive() {
	if l.depth == 0 {
		l.wd.enter()
	}
	l.depth++
}

func (l *loop) leave() {
	if l.depth == 1 {
		l.resuming = false // also after a panic
		if len(l.ready) > 0 {
			l.resumeReady()
		}
		l.wd.exit()
	}
	l.depth--
}

// runPending runs the jobs posted so far, up to the budget, and never waits
// for more. Lwt thread, outermost entry only.
func (l *loop) runPending() {
	if l.depth != 1 {
		return
	}
	l.notify.drain()
	l.mu.Lock()
	n := min(len(l.jobs), budget)
	batch := append(l.batch[:0], l.jobs[:n]...)
	l.batch = nil // a runPending that a job runs gets its own
	rest := copy(l.jobs, l.jobs[n:])
	clear(l.jobs[rest:])
	l.jobs = l.jobs[:rest]
	l.woken = rest > 0
	if rest > 0 {
		l.notify.wake()
	}
	l.mu.Unlock()
	for i, job := range batch {
		batch[i] = nil
		l.wd.hold(holderJob) // again after a job that resumed a task
		runJob(job)
	}
	l.batch = batch[:0]
	if len(l.shutdownWaiters) > 0 && !l.stopping {
		shutdownBridge(l, l.shutdownCtx, l.shutdownBegun)
	}
}

// runJob runs a posted job; a panic in it must not unwind into OCaml.
func runJob(job func()) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "lwt: panic in a job on the Lwt thread: %v\n%s", r, debug.Stack())
		}
	}()
	job()
}

// resumeReady steps ready tasks, up to the budget. Lwt thread, outermost
// entry only.
func (l *loop) resumeReady() {
	for i := 0; len(l.ready) > 0; i++ {
		if i == budget {
			l.kick()
			return
		}
		t := l.ready[0]
		n := copy(l.ready, l.ready[1:])
		l.ready[n] = nil
		l.ready = l.ready[:n]
		l.step(t)
	}
}

// schedule makes t run: now when the Lwt thread is in its outermost entry
// and no task is running, otherwise before that entry returns. Lwt thread only.
func (l *loop) schedule(t *task) {
	if l.depth == 1 && l.running == nil {
		l.step(t)
		return
	}
	l.ready = append(l.ready, t)
}

// task is Go code running on the Lwt thread as a runtime coroutine: Await
// inside it yields back to the Lwt loop instead of blocking the thread.
type task struct {
	holder *holder // names it in the watchdog's report
	g      uintptr // its coroutine's goroutine (getg.G), once it ran
	l      *loop
	ctx    context.Context // the task's own context; its cancellation wakes any Await
	body   func()          // run by the coroutine; recovers its own panics
	abort  func(error)     // settles the task's promise when the body never runs
	next   func() (struct{}, bool)
	stop   func()
	yield  func(struct{}) bool

	waiting   bool         // suspended in Await
	seq       uint64       // counts awaits, so that a stale wake-up is ignored
	stopped   bool         // stop was called: no further Await may suspend
	ownCtx    bool         // the pending Await uses ctx, whose cancellation wakes it
	ctxCanEnd bool         // ctx.Done() != nil, asked once
	ctxCall   *inCall      // ctx, when it is the OCaml call that started the task
	unwatch   func() bool  // the watch on ctx, made at the first Await
	calls     []*callState // calls into OCaml in flight under ctx, cancelled with it
}

// spawn starts a task running body (at once if the Lwt thread is in its
// outermost entry and no task runs, else before that entry returns).
// Lwt thread only.
func (l *loop) spawn(t *task) {
	t.l = l
	if l.closed.Load() {
		t.abort(ErrClosed)
		return
	}
	t.ctxCall, _ = t.ctx.(*inCall)
	t.ctxCanEnd = t.ctxCall != nil || t.ctx.Done() != nil // a call's Done would make a channel
	l.live[t] = struct{}{}
	l.tasksLive.Add(1)
	l.schedule(t)
}

// step runs t until it awaits or finishes. Lwt thread, outermost entry only.
func (l *loop) step(t *task) {
	if t.next == nil {
		if _, ok := l.live[t]; !ok {
			return // stopped before it ever ran
		}
		t.next, t.stop = iter.Pull(func(yield func(struct{}) bool) {
			t.g = getg.G()
			t.l.runningG.Store(t.g)
			// Cleared before the coroutine's g is freed: a goroutine given
			// that g next must never pass onLoopThread's check.
			defer t.l.runningG.Store(0)
			t.yield = yield
			t.body()
		})
	}
	l.setRunning(t)
	l.wd.hold(t.holder)
	_, more := t.next()
	l.setRunning(nil)
	if !more {
		l.finish(t)
	}
}

// setRunning records the task whose coroutine runs now (nil: none).
func (l *loop) setRunning(t *task) {
	l.running = t
	if t == nil {
		l.runningG.Store(0)
	} else {
		l.runningG.Store(t.g) // 0 before its first run: the coroutine stores it
	}
}

func (l *loop) finish(t *task) {
	delete(l.live, t)
	l.tasksLive.Add(-1)
	t.stopWatching()
	for _, cs := range t.calls { // started with Func.Go and not awaited: they outlive the task
		s := cs.self
		cs.task, cs.self = nil, nil
		cs.watch(t.ctx, l, s)
	}
	t.calls = nil
	t.next, t.stop, t.yield = nil, nil, nil
}

// stopWatching drops the watch on the task's ctx: the task awaits no more.
// A task body that is about to end a context by settling an OCaml call
// calls it first, so that the end posts nothing.
func (t *task) stopWatching() {
	if t.unwatch != nil {
		t.unwatch()
		t.unwatch = nil
	}
}

// owns reports whether ctx is t's own context (ctx == t.ctx), without the
// runtime call that comparing interfaces costs when ctx is a call.
func (t *task) owns(ctx context.Context) bool {
	if c, ok := ctx.(*inCall); ok {
		return c == t.ctxCall
	}
	return ctx == t.ctx
}

// wake resumes t if it still waits in the await numbered seq. Lwt thread only.
func (t *task) wake(seq uint64) {
	if t.waiting && t.seq == seq {
		t.waiting = false
		t.l.schedule(t)
	}
}

// onCancel runs on the Lwt thread once the task's ctx is cancelled.
func (t *task) onCancel() {
	calls := t.calls
	t.calls = nil
	for _, cs := range calls {
		// Lwt.cancel of one call may settle a later one at once (their
		// promises are one, or chained): that one is no longer watched.
		if s := cs.self; s != nil {
			t.l.cancelOutCall(s, t.ctx.Err())
		}
	}
	if t.ownCtx {
		t.wake(t.seq)
	}
}

// dropCall forgets the call whose state is cs. The call a task awaits is
// the last it started: searched from the end.
func (t *task) dropCall(cs *callState) {
	for i := len(t.calls) - 1; i >= 0; i-- {
		if t.calls[i] == cs {
			last := len(t.calls) - 1
			if i < last {
				copy(t.calls[i:], t.calls[i+1:])
			}
			t.calls[last] = nil
			t.calls = t.calls[:last]
			return
		}
	}
}

// suspend parks the running task until a wake with the current seq. It
// reports false when the task was stopped instead. Awaiting again in a
// stopped task unwinds it: a loop that ignores ErrClosed still ends.
func (t *task) suspend() bool {
	if t.stopped {
		panic(errTaskStopped)
	}
	if t.unwatch == nil && t.ctx.Done() != nil {
		t.unwatch = context.AfterFunc(t.ctx, func() { t.l.post(t.onCancel) })
	}
	t.waiting = true
	ok := t.yield(struct{}{})
	t.waiting = false
	t.stopped = !ok
	return ok
}

// unwindIfStopped unwinds the calling task if shutdown stopped it, so that
// a task that ignores ErrClosed and retries (even with promises already
// settled) still ends. One atomic load unless a shutdown is under way.
func unwindIfStopped() {
	if l := current.Load(); l != nil && l.unwinding.Load() && onLoopThread() &&
		l.depth == 1 && l.running != nil && l.running.stopped {
		panic(errTaskStopped)
	}
}

// stopAll ends every live task: a suspended one sees ErrClosed from its
// Await and runs to its end; one that never ran is failed with ErrClosed.
// Lwt thread, outermost entry only.
func (l *loop) stopAll() {
	l.unwinding.Store(true)
	for t := range l.live {
		if t.stop == nil {
			l.finish(t)
			t.abort(ErrClosed)
			continue
		}
		l.setRunning(t)
		t.stop()
		l.setRunning(nil)
		l.finish(t)
	}
	l.ready = l.ready[:0]
}

// start makes the calling OS thread the Lwt thread and returns its new
// executor. It fails if a bridge is already running, or starting on
// another thread at once.
func start() (*loop, error) {
	l, err := newLoop()
	if err != nil {
		return nil, err
	}
	for {
		old := current.Load()
		if old != nil && !old.isClosed() {
			l.notify.close()
			return nil, errors.New("lwt: already initialised (call shutdown first)")
		}
		if current.CompareAndSwap(old, l) {
			break
		}
	}
	setLoopThread(true)
	go l.wd.run()
	return l, nil
}

func (l *loop) isClosed() bool { return l.closed.Load() }

// shutdown closes the executor: it stops every task, then calls failAll to
// fail what is still in flight, runs the jobs already posted (they find the
// bridge closed) and closes the notifier. Lwt thread, outermost entry only.
func (l *loop) shutdown(failAll func()) error {
	l.wd.stopWatching()
	l.mu.Lock()
	l.closed.Store(true)
	close(l.gone)
	jobs := l.jobs
	l.jobs = nil
	l.mu.Unlock()
	l.stopAll()
	failAll()
	for _, job := range jobs {
		runJob(job)
	}
	setLoopThread(false)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.notify.close()
}
