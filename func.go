package lwt

// Go's calls into OCaml: Func (an OCaml closure or registered function held
// by Go), its Call and Go, the records of the calls in flight (callTable:
// ids that OCaml's promises settle through lwt_go_resolve/_reject), their
// cancellation, and Lookup of the functions OCaml registered by name. All
// on the Lwt thread, but Go, Release and Lookup, which any goroutine may
// call (Go posts the call; Lookup reads the named functions under their
// lock). A call's id is in its bridge's callTable from send until OCaml
// settles it, Go cancels it, or shutdown abandons it: one of the three,
// once.

/*
#include "ocaml_api.h"

// The function table stubs.c registered at init, and the out-parameters of
// ocaml_api.h. Lwt thread only.
struct lwt_ocaml *lwt_api;
struct lwt_call_out lwt_call_out;
int lwt_call_status;
size_t lwt_out_len;
struct lwt_deferred_call lwt_deferred_call;

static void lwt_set_api(struct lwt_ocaml *a) { lwt_api = a; }
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Func is an OCaml function 'a -> 'b Lwt.t held by Go: A and R are the Go
// types of 'a and 'b. It keeps its closure alive until Release, until the
// Func is garbage collected, or until the bridge shuts down.
type Func[A, R any] struct {
	root  *ocamlRef
	enc   *codec[A]
	dec   *codec[R]
	sync  bool           // registered with Lwt_interop.register_sync: settles at once
	spare []*taskCall[R] // call records for Call to reuse; Lwt thread only
}

// closureCodec gives codecFor a maker of Funcs for an OCaml closure of
// type arg -> ret Lwt.t (or arg -> ret, sync), which holds the closure on
// the Lwt thread.
func (*Func[A, R]) closureCodec(arg, ret *otype, sync bool) (func(v value) (any, error), error) {
	enc, dec, err := funcCodecs[A, R](arg, ret)
	if err != nil {
		return nil, err
	}
	return func(v value) (any, error) {
		root, err := newOCamlRef(v, false)
		if err != nil {
			return nil, err
		}
		return &Func[A, R]{root: root, enc: enc, dec: dec, sync: sync}, nil
	}, nil
}

// funcCodecs matches an OCaml function's argument and result types with A
// and R.
func funcCodecs[A, R any](arg, ret *otype) (*codec[A], *codec[R], error) {
	enc, err := codecFor[A](arg, toOCaml)
	if err != nil {
		return nil, nil, within("argument", err)
	}
	dec, err := codecFor[R](ret, fromOCaml)
	if err != nil {
		return nil, nil, within("result", err)
	}
	return enc, dec, nil
}

// Call calls the OCaml function with arg and waits for its result.
//
// In a loop task it suspends the task until OCaml settles the call, and
// allocates nothing once warm; in a goroutine it blocks. Anywhere else on
// the Lwt thread (a sync function, a job, a Then callback) waiting would
// stall the event loop: there Call returns ErrWouldBlock without calling
// (use Go), unless OCaml registered the function with register_sync.
//
// An OCaml exception, raised or carried by the Lwt promise, is returned as
// an *OCamlError. When ctx ends first, Call returns ctx's error and the Lwt
// promise is cancelled (Lwt.cancel: its on_cancel handlers run).
func (f *Func[A, R]) Call(ctx context.Context, arg A) (R, error) {
	if !f.root.l.inRunningTask() && !onLoopThread() {
		return f.Go(ctx, arg).Await(ctx)
	}
	var zero R
	if err := f.root.usable(); err != nil {
		// A shutdown closes the bridge before it stops the tasks: a task it
		// stopped finds no usable function.
		unwindIfStopped()
		return zero, err
	}
	l := f.root.l
	t := l.running
	if t == nil || l.depth != 1 {
		if f.sync {
			v, err, _ := f.Go(ctx, arg).Result()
			return v, err
		}
		return zero, ErrWouldBlock
	}
	var sent sentCall
	pending, v, err := f.send(ctx, arg, false, &sent)
	if !pending {
		return v, err
	}
	c := f.spareCall()
	c.t = t
	t.seq++
	c.seq = t.seq
	if err := sent.keep(l, c); err != nil {
		f.recycle(c)
		return zero, err
	}
	for !c.done {
		if !t.suspend() {
			return zero, ErrClosed // stopped by shutdown; it fails the call too
		}
	}
	v, err = c.value, c.err
	// An abandoned call keeps its id until OCaml settles it, and a fired
	// watch may still post a cancel naming it: such a record is not reused.
	if !c.abandoned && !c.fired {
		f.recycle(c)
	}
	return v, err
}

// Go starts calling the OCaml function with arg and returns a promise of
// its result, like net/rpc's Client.Go. Safe from any goroutine: on the Lwt
// thread the function runs at once, elsewhere the call is posted. Errors and
// ctx are as for Call.
func (f *Func[A, R]) Go(ctx context.Context, arg A) *Promise[R] {
	return f.goCall(ctx, arg, !onLoopThread())
}

// goCall is Go; with post, the call is made by a posted job even on the Lwt
// thread.
func (f *Func[A, R]) goCall(ctx context.Context, arg A, post bool) *Promise[R] {
	c := &outCall[R]{dec: f.dec}
	l := f.root.l
	// A posted cancel runs after the posted start: a call cancelled before
	// it is made is made, then cancelled.
	c.Promise.cancel = func() { l.post(func() { l.cancelOutCall(c, context.Canceled) }) }
	if !post {
		f.start(ctx, c, arg)
	} else if err := l.post(func() { f.start(ctx, c, arg) }); err != nil {
		return Rejected[R](err)
	}
	return &c.Promise
}

// start makes Go's call c on the Lwt thread, or fails it.
func (f *Func[A, R]) start(ctx context.Context, c *outCall[R], arg A) {
	if err := f.root.usable(); err != nil {
		c.finish(*new(R), err)
		return
	}
	var sent sentCall
	pending, v, err := f.send(ctx, arg, true, &sent)
	if pending {
		err = sent.keep(f.root.l, c)
		if err == nil {
			return
		}
	}
	c.finish(v, err)
}

// send makes a call of f with arg on the Lwt thread, once the caller has
// checked that f's root is usable, or leaves it to stubs.c (mayDefer). It
// returns pending when OCaml's promise waits: the caller then keeps the
// call described in sent (sentCall.keep) before anything else runs, and
// OCaml settles it later (lwt_go_resolve, lwt_go_reject). Otherwise it returns the call's
// outcome: an error that kept it from being made, or OCaml's promise
// already settled. A call whose ctx can end, or whose promise can be
// cancelled (promised: Func.Go's), is cancellable: its end Lwt.cancels
// OCaml's promise.
func (f *Func[A, R]) send(ctx context.Context, arg A, promised bool, sent *sentCall) (pending bool, v R, err error) {
	l := f.root.l
	// The running task's own context is watched by the task, which knows
	// whether it can end (and spares a Done that would make a channel).
	t := l.running
	own := t != nil && t.owns(ctx)
	canEnd := own && t.ctxCanEnd
	switch {
	case own && t.ctxCall != nil:
		err = t.ctxCall.Err() // not through the interface
	case own:
		err = ctx.Err()
	default:
		canEnd = ctx.Done() != nil
		err = ctx.Err()
	}
	*sent = sentCall{ctx: ctx, own: own, canEnd: canEnd}
	if err != nil {
		return false, v, err
	}
	arg1, err := f.enc.encode(arg)
	if err != nil {
		return false, v, err
	}
	sent.id = l.outCalls.reserve()
	if !promised && l.mayDefer() {
		d := &C.lwt_deferred_call // not running: set in a deferred call's OCaml code, which this may run in
		d.fn, d.arg, d.id, d.cancellable, d.set = f.root.cell.root, arg1, C.intptr_t(sent.id), boolInt(sent.canEnd), 1
		return true, v, nil
	}
	C.lwt_call(f.root.cell.root, arg1, C.intptr_t(sent.id), boolInt(promised || sent.canEnd))
	switch C.lwt_call_status {
	case C.LWT_PENDING:
		C.lwt_deferred_call.missed = 0
		return true, v, nil
	case C.LWT_RESOLVED:
		l.outCalls.unreserve(sent.id)
		v, err = f.dec.decode(C.lwt_call_out.result)
		return false, v, err
	default:
		l.outCalls.unreserve(sent.id)
		return false, v, takeCallError(&C.lwt_call_out)
	}
}

// sentCall is a call that send made (or deferred), whose OCaml promise
// waits as call id.
type sentCall struct {
	id          int
	ctx         context.Context
	own, canEnd bool // ctx is the running task's own; ctx can end
}

// keep puts the call, whose record is s, in flight and watches its
// context: by the running task if ctx is its own. It fails if a shutdown
// abandoned the call's id while OCaml ran it.
func (sc *sentCall) keep(l *loop, s settler) error {
	if !l.outCalls.keep(sc.id, s) {
		return ErrClosed // OCaml's promise no longer reaches Go
	}
	if sc.own && sc.canEnd {
		s.state().watchedBy(l.running, s)
	} else if sc.canEnd {
		s.state().watch(sc.ctx, l, s)
	}
	return nil
}

// takeCallError reads and frees the exception of a call that OCaml
// rejected at once.
func takeCallError(out *C.struct_lwt_call_out) *OCamlError {
	defer func() {
		C.free(unsafe.Pointer(out.error))
		out.error = nil
	}()
	if out.error == nil {
		return &OCamlError{Exn: "an exception that Go could not read (out of memory)"}
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(out.error)), int(out.error_len))
	if out.error_is_text != 0 {
		return &OCamlError{Exn: string(b)}
	}
	return ocamlError(b)
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// spareCall returns a reset call record for Call. Lwt thread only.
func (f *Func[A, R]) spareCall() *taskCall[R] {
	if n := len(f.spare); n > 0 {
		c := f.spare[n-1]
		f.spare = f.spare[:n-1]
		return c
	}
	return &taskCall[R]{dec: f.dec}
}

func (f *Func[A, R]) recycle(c *taskCall[R]) {
	*c = taskCall[R]{dec: f.dec}
	f.spare = append(f.spare, c)
}

// Release lets the OCaml GC collect the closure; later calls fail with
// ErrReleased. Safe from any goroutine.
func (f *Func[A, R]) Release() { f.root.release() }

// settler is a Go→OCaml call in flight, settled on the Lwt thread.
type settler interface {
	resolve(v value)
	reject(e *OCamlError)
	abandon(err error) // settle with err, without OCaml's answer
	state() *callState
	// wakesOnlyItsTask reports whether settling the call wakes one task as
	// its last act (Call's record), which may then defer its next call
	// (mayDefer); a promise wakes any number of waiters and callbacks.
	wakesOnlyItsTask() bool
}

// callState is what every Go→OCaml call in flight keeps: its id in
// outCalls and the watch that cancels it with its context. Lwt thread only.
type callState struct {
	id int
	// The running task's own context is watched by the task (which costs
	// nothing per call): the call is then in task.calls, as self. Any other
	// context is watched by an AfterFunc.
	task    *task
	self    settler
	unwatch func() bool
}

// mayDefer reports whether the running task's Call may leave its call to
// stubs.c, which makes it once the entry returns: nothing else may run in
// Go before then, for it could call OCaml first, and an OCaml allocation
// could move the deferred argument. So the task was resumed by OCaml's
// answer to its own last call, in the outermost entry (lwt_go_resolve,
// lwt_go_reject, lwt_go_fail set resuming): no other waiter or callback
// comes after it there; no other task is ready; and Call suspends the task
// at once. Not when the task's last deferred call was answered at once:
// such calls are cheaper made from Go, which gets the answer without
// resuming the task.
func (l *loop) mayDefer() bool {
	return l.resuming && len(l.ready) == 0 && C.lwt_deferred_call.set == 0 && C.lwt_deferred_call.missed == 0
}

// inDeferredCall reports whether OCaml code runs for a call that a task
// deferred: an entry into Go from it is nested in a call of Go's, as it is
// when Go makes the call itself (no jobs run there, shutdown is refused).
func inDeferredCall() bool { return C.lwt_deferred_call.running != 0 }

// watch arranges for the end of ctx to cancel call s.
func (cs *callState) watch(ctx context.Context, l *loop, s settler) {
	cs.unwatch = context.AfterFunc(ctx, func() {
		l.post(func() { l.cancelOutCall(s, ctx.Err()) })
	})
}

// watchedBy puts call s in the calls of task t, which cancels them when
// its own context ends.
func (cs *callState) watchedBy(t *task, s settler) {
	cs.task, cs.self = t, s
	t.calls = append(t.calls, cs)
}

// unwatchCall stops watching the call's context. It reports whether the
// AfterFunc had already run: a cancel naming the call may then be in flight.
func (cs *callState) unwatchCall() (fired bool) {
	if cs.task != nil {
		cs.task.dropCall(cs)
		cs.task, cs.self = nil, nil
	}
	if cs.unwatch != nil {
		fired = !cs.unwatch()
		cs.unwatch = nil
	}
	return fired
}

func (cs *callState) state() *callState { return cs }

// outCall is a call made by Go: settled into a promise that anyone may
// hold and await.
type outCall[R any] struct {
	Promise[R]
	callState
	dec *codec[R]
}

func (c *outCall[R]) resolve(v value) { c.finish(c.dec.decode(v)) }

func (c *outCall[R]) wakesOnlyItsTask() bool { return false }

func (c *outCall[R]) reject(e *OCamlError) {
	var zero R
	c.finish(zero, e)
}

func (c *outCall[R]) abandon(err error) {
	var zero R
	c.finish(zero, err)
}

func (c *outCall[R]) finish(v R, err error) {
	c.unwatchCall()
	c.settle(v, err, true)
}

// taskCall is a call made by Call in a loop task, which waits for it: no
// promise, no locks (everything happens on the Lwt thread), and reused.
type taskCall[R any] struct {
	callState
	dec       *codec[R]
	t         *task  // the waiting task
	seq       uint64 // the task's await that this call wakes
	done      bool
	abandoned bool
	fired     bool // its ctx watch ran: a cancel naming it may be in flight
	value     R
	err       error
}

func (c *taskCall[R]) wakesOnlyItsTask() bool { return true }

func (c *taskCall[R]) resolve(v value) {
	if !c.done {
		c.finish(c.dec.decode(v))
	}
}

func (c *taskCall[R]) reject(e *OCamlError) {
	var zero R
	c.finish(zero, e)
}

func (c *taskCall[R]) abandon(err error) {
	var zero R
	c.abandoned = !c.done // before finish, which may resume the task
	c.finish(zero, err)
}

func (c *taskCall[R]) finish(v R, err error) {
	if c.done {
		return
	}
	c.done, c.value, c.err = true, v, err
	c.fired = c.unwatchCall()
	c.t.wake(c.seq)
}

// cancelOutCall settles call s with err and cancels its Lwt promise. OCaml
// marks the call dead before Lwt.cancel, so that a promise that ignores
// Lwt.cancel (an Lwt.wait one) and settles later reaches Go no more: the id
// is free at once. Lwt thread only.
func (l *loop) cancelOutCall(s settler, err error) {
	id := s.state().id
	if l.outCalls.holds(id, s) {
		// OCaml first, before abandon runs Go code that may make calls
		// (which could reuse the slot that OCaml's cancel names).
		l.outCalls.take(id)
		C.lwt_cancel(C.intptr_t(id))
		s.abandon(err)
	}
}

// errSettledOffThread fails a Go→OCaml call whose promise was settled on a
// thread other than the Lwt thread: its value cannot be handed over there.
var errSettledOffThread = errors.New("lwt: the OCaml promise was settled on a thread that is not the Lwt thread " +
	"(Lwt is not thread-safe: settle it on the Lwt thread, e.g. with Lwt_preemptive.run_in_main)")

// failOffThread fails call id, settled by OCaml on another thread. Lwt
// thread only.
func (l *loop) failOffThread(id int) {
	if s := l.outCalls.take(id); s != nil {
		s.abandon(errSettledOffThread)
	}
}

// callTable numbers the Go→OCaml calls in flight; Lwt thread only, but
// for inFlight, which CurrentStats reads. A call's id is its slot and the
// slot's generation (gen<<32 | slot): OCaml indexes its cancellers by the
// slot, and an id that reaches Go late (settled on another thread, or
// after a restart) names no other call, whatever reused its slot.
//
// A call gets its id before OCaml is called (reserve), and keeps it only
// if OCaml's promise waits (keep); otherwise no one saw the id, and it is
// the next call's (unreserve): a call OCaml answers at once, the common
// case of a task calling an Lwt function in a loop, touches no slot.
type callTable struct {
	slots    []callSlot
	free     []int
	spare    int  // a reserved id handed back, if hasSpare
	hasSpare bool // the next reserve returns spare
	inFlight atomic.Int64
}

// callSlot holds a call in flight, or nil (free, or reserved); gen is
// the generation of its latest id.
type callSlot struct {
	s   settler
	gen uint32
}

// callGens numbers the calls of every bridge of the process: a restarted
// bridge reuses no id.
var callGens atomic.Uint32

// genMask keeps an id (gen<<32 | slot) within OCaml's positive ints, which
// have 62 bits: a generation of 30 bits.
const genMask = 1<<30 - 1

const slotBits = 32

// reserve returns the id of the next call.
func (t *callTable) reserve() int {
	if t.hasSpare {
		t.hasSpare = false
		return t.spare
	}
	var slot int
	if n := len(t.free); n > 0 {
		slot = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		slot = len(t.slots)
		t.slots = append(t.slots, callSlot{})
	}
	gen := callGens.Add(1) & genMask
	t.slots[slot].gen = gen
	return int(gen)<<slotBits | slot
}

// reserved reports whether id is reserved: false after abandonAll emptied
// the table (a shutdown while OCaml ran the call).
func (t *callTable) reserved(id int) bool {
	slot := id & (1<<slotBits - 1)
	return slot < len(t.slots) && t.slots[slot].s == nil && t.slots[slot].gen == uint32(id>>slotBits)
}

// keep puts call s in flight as id, reserved for it, once OCaml's promise
// waits. It reports false if id is no longer reserved.
func (t *callTable) keep(id int, s settler) bool {
	if !t.reserved(id) {
		return false
	}
	t.slots[id&(1<<slotBits-1)].s = s
	s.state().id = id
	t.inFlight.Add(1)
	return true
}

// unreserve hands back id, reserved for a call that OCaml settled at once.
func (t *callTable) unreserve(id int) {
	switch {
	case !t.reserved(id):
	case !t.hasSpare:
		t.spare, t.hasSpare = id, true
	default: // a nested call's id was handed back meanwhile
		t.free = append(t.free, id&(1<<slotBits-1))
	}
}

// take removes and returns call id, or nil if it is not in flight.
func (t *callTable) take(id int) settler {
	slot, gen := id&(1<<slotBits-1), uint32(id>>slotBits)
	if id < 0 || slot >= len(t.slots) || t.slots[slot].s == nil || t.slots[slot].gen != gen {
		return nil
	}
	s := t.slots[slot].s
	t.slots[slot].s = nil
	t.free = append(t.free, slot)
	t.inFlight.Add(-1)
	return s
}

// holds reports whether call id is in flight as s.
func (t *callTable) holds(id int, s settler) bool {
	slot := id & (1<<slotBits - 1)
	return slot < len(t.slots) && t.slots[slot].s == s && t.slots[slot].gen == uint32(id>>slotBits)
}

// abandonAll settles every call in flight with err, at shutdown.
func (t *callTable) abandonAll(err error) {
	for slot, c := range t.slots {
		if c.s != nil {
			t.take(int(c.gen)<<slotBits | slot)
			c.s.abandon(err)
		}
	}
	t.slots, t.free, t.hasSpare = nil, nil, false
}

// Lookup returns the OCaml function registered as name with
// Lwt_interop.register (an 'a -> 'b Lwt.t) or Lwt_interop.register_sync (an
// 'a -> 'b), where A and R are the Go types of 'a and 'b. Safe from any
// goroutine. OCaml keeps the registered functions; the first Lookup of a
// name asks OCaml for it (from a goroutine, on the Lwt thread, waiting),
// and the bridge then keeps one root to it for every later Lookup. The Func
// is valid until the bridge shuts down; its Release does nothing.
func Lookup[A, R any](name string) (*Func[A, R], error) {
	l, err := activeLoop()
	if err != nil {
		return nil, err
	}
	f, ok := l.lookedUp.get(name)
	if !ok {
		if onLoopThread() {
			f, err = l.find(name)
		} else {
			f, err = OnLoop(func() (lookedUp, error) { return l.find(name) }).Await(context.Background())
		}
		if err != nil {
			return nil, err
		}
	}
	enc, dec, err := funcCodecs[A, R](f.arg, f.ret)
	if err != nil {
		return nil, fmt.Errorf("lwt: OCaml registered %q as %v -> %v, but Go looks it up as Func[%v, %v]: %w",
			name, f.arg, f.ret, reflect.TypeFor[A](), reflect.TypeFor[R](), err)
	}
	return &Func[A, R]{root: f.root, enc: enc, dec: dec, sync: f.sync}, nil
}

// lookedUp is an OCaml function registered by name that Go looked up: its
// types as OCaml declared them, and the bridge's root to it.
type lookedUp struct {
	arg, ret *otype
	sync     bool
	root     *ocamlRef // pinned: freed at shutdown
}

// lookedUpFuncs caches the functions Go looked up, for one bridge. Any
// goroutine reads it under mu; find fills it on the Lwt thread.
type lookedUpFuncs struct {
	mu    sync.Mutex
	funcs map[string]lookedUp
}

func (c *lookedUpFuncs) get(name string) (lookedUp, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.funcs[name]
	return f, ok
}

// find asks OCaml for the function registered as name and keeps it. Lwt
// thread only.
func (l *loop) find(name string) (lookedUp, error) {
	if f, ok := l.lookedUp.get(name); ok { // found while this call was posted
		return f, nil
	}
	if l.isClosed() {
		return lookedUp{}, ErrClosed
	}
	var r C.struct_lwt_named
	if C.lwt_find(name, &r) == 0 {
		return lookedUp{}, fmt.Errorf("lwt: no OCaml function registered as %q", name)
	}
	f := lookedUp{sync: r.sync != 0}
	var err error
	if f.arg, err = parseOType(C.GoStringN(r.arg_sig, C.int(r.arg_len))); err != nil {
		return lookedUp{}, err
	}
	if f.ret, err = parseOType(C.GoStringN(r.ret_sig, C.int(r.ret_len))); err != nil {
		return lookedUp{}, err
	}
	if f.root, err = newOCamlRef(r.fn, true); err != nil {
		return lookedUp{}, err
	}
	l.lookedUp.mu.Lock()
	defer l.lookedUp.mu.Unlock()
	if l.lookedUp.funcs == nil {
		l.lookedUp.funcs = make(map[string]lookedUp)
	}
	l.lookedUp.funcs[name] = f
	return f, nil
}

func setAPI(api *C.struct_lwt_ocaml) { C.lwt_set_api(api) }
