package lwt

// Go functions for OCaml: the registry (Register, RegisterTask,
// RegisterSync; any goroutine, serialised by its lock, read without one
// through an immutable snapshot) and OCaml's calls into them in flight
// (inCall, Lwt thread only but for the call's context). A call is settled
// once: its resolver's slot in stubs.c is taken by exactly one of resolve
// and reject, and shutdown rejects what is left.

/*
#include "ocaml_api.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// kind is how a registered Go function runs; the values match the LWT_*
// constants of lwt_interop.h.
type kind int

const (
	kindGoroutine kind = 0 // a new goroutine per call
	kindTask      kind = 1 // a loop task on the Lwt thread
	kindSync      kind = 2 // directly on the Lwt thread, returning at once
)

func (k kind) String() string {
	return [...]string{"goroutine", "task", "sync"}[k]
}

// goFunc is a Go function registered for OCaml to bind by name.
type goFunc struct {
	name             string
	holder           *holder // names it in the watchdog's report
	kind             kind
	argType, retType reflect.Type
	// bind makes the binding of the function to OCaml's view of its types,
	// or an error naming both sides.
	bind     func(arg, ret *otype) (*binding, error)
	bindings map[string]int // by OCaml's type codes: their index in registry.bindings
}

// binding is a registered function bound by OCaml to its argument and
// result types: what OCaml's calls name by its index.
type binding struct {
	g *goFunc
	// start begins an asynchronous call on the Lwt thread: it decodes arg
	// now and settles the OCaml promise through c when done.
	start func(arg value, c *inCall)
	// call runs a sync function on the Lwt thread; lwt_go_call_sync
	// recovers its panics.
	call func(arg value) (value, error)
	// released runs when OCaml's GC frees the closure holding the binding
	// (a Callback's), if set.
	released func()
}

var errGoexit = errors.New("lwt: the Go function called runtime.Goexit")

// registry holds the registered functions and their bindings. Calls from
// OCaml read an immutable snapshot of the bindings without locking.
var registry struct {
	mu       sync.Mutex // serialises Register and bind
	byName   map[string]*goFunc
	bindings atomic.Pointer[[]*binding]
}

// Register makes fn callable from OCaml under name: Lwt_interop.bind gives
// an 'a -> 'b Lwt.t whose calls each run fn in a new goroutine, with a
// context that Lwt.cancel on the call's promise (or shutdown) cancels.
// A and R are the Go types of 'a and 'b (see the README for the mapping),
// checked against OCaml's when it binds the function. fn's error, or a
// panic in it, rejects the promise with Go_error.
func Register[A, R any](name string, fn func(context.Context, A) (R, error)) error {
	return register(name, kindGoroutine, fn)
}

// RegisterTask is Register for a function run as a loop task on the Lwt
// thread: it may await promises and call OCaml directly, and must never
// block (see Spawn).
func RegisterTask[A, R any](name string, fn func(context.Context, A) (R, error)) error {
	return register(name, kindTask, fn)
}

// RegisterSync is Register for a function that runs directly on the Lwt
// thread and returns at once: Lwt_interop.bind_sync gives an 'a -> 'b. It
// must not block or await.
func RegisterSync[A, R any](name string, fn func(A) (R, error)) error {
	return register(name, kindSync, func(_ context.Context, a A) (R, error) { return fn(a) })
}

// MustRegister is Register that panics on error, for registrations in a
// package's init.
func MustRegister[A, R any](name string, fn func(context.Context, A) (R, error)) {
	must(Register(name, fn))
}

// MustRegisterTask is RegisterTask that panics on error.
func MustRegisterTask[A, R any](name string, fn func(context.Context, A) (R, error)) {
	must(RegisterTask(name, fn))
}

// MustRegisterSync is RegisterSync that panics on error.
func MustRegisterSync[A, R any](name string, fn func(A) (R, error)) {
	must(RegisterSync(name, fn))
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func register[A, R any](name string, k kind, fn func(context.Context, A) (R, error)) error {
	if err := crossable(reflect.TypeFor[A](), fromOCaml); err != nil {
		return fmt.Errorf("lwt: registering %q: argument: %w", name, err)
	}
	if err := crossable(reflect.TypeFor[R](), toOCaml); err != nil {
		return fmt.Errorf("lwt: registering %q: result: %w", name, err)
	}
	g := &goFunc{name: name, kind: k, bindings: map[string]int{},
		argType: reflect.TypeFor[A](), retType: reflect.TypeFor[R](),
		holder: &holder{name: fmt.Sprintf("the %s function %q", k, name)}}
	g.bind = func(arg, ret *otype) (*binding, error) {
		dec, err := codecFor[A](arg, fromOCaml)
		if err != nil {
			return nil, within("argument", err)
		}
		enc, err := codecFor[R](ret, toOCaml)
		if err != nil {
			return nil, within("result", err)
		}
		return bindFunc(g, fn, dec, enc), nil
	}

	registry.mu.Lock()
	defer registry.mu.Unlock()
	if _, dup := registry.byName[name]; dup {
		return fmt.Errorf("lwt: a Go function is already registered as %q", name)
	}
	if registry.byName == nil {
		registry.byName = make(map[string]*goFunc)
	}
	registry.byName[name] = g
	return nil
}

// bindFunc makes the binding of g, whose function is fn, with the codecs
// of OCaml's view of its types.
func bindFunc[A, R any](g *goFunc, fn func(context.Context, A) (R, error), dec *codec[A], enc *codec[R]) *binding {
	b := &binding{g: g}
	settle := func(c *inCall, r R, err error) {
		if err == nil {
			var v value
			if v, err = enc.encode(r); err == nil {
				c.resolve(v)
				return
			}
		}
		c.reject(err)
	}
	b.start = func(arg value, c *inCall) {
		a, err := dec.decode(arg)
		if err != nil {
			c.reject(err)
			return
		}
		run := func() (R, error) { return fn(c, a) }
		switch g.kind {
		case kindSync: // a SyncCallback called as an 'a -> 'b Lwt.t
			r, err := recovered(run)
			settle(c, r, err)
			return
		case kindTask:
			t := &task{ctx: c, holder: g.holder}
			t.body = func() {
				r, err := recovered(run)
				t.stopWatching()
				settle(c, r, err)
			}
			t.abort = func(err error) { c.reject(err) }
			c.l.spawn(t)
			return
		}
		go func() {
			var r R
			err := errGoexit // unless recovered returns: fn called runtime.Goexit
			defer func() { c.l.post(func() { settle(c, r, err) }) }()
			r, err = recovered(run)
		}()
	}
	b.call = func(arg value) (value, error) { // its caller recovers panics
		a, err := dec.decode(arg)
		if err != nil {
			return 0, err
		}
		r, err := fn(context.Background(), a)
		if err != nil {
			return 0, err
		}
		return enc.encode(r)
	}
	return b
}

// lookup binds the function registered as name to OCaml's view of its
// types (type codes, ocamltype.go), once per view, and returns the
// binding's index.
func lookup(name, argCode, retCode string) (int, *goFunc, error) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	g, ok := registry.byName[name]
	if !ok {
		return 0, nil, fmt.Errorf("lwt: no Go function registered as %q", name)
	}
	key := argCode + "\x00" + retCode
	if id, ok := g.bindings[key]; ok {
		return id, g, nil
	}
	arg, err := parseOType(argCode)
	if err != nil {
		return 0, nil, err
	}
	ret, err := parseOType(retCode)
	if err != nil {
		return 0, nil, err
	}
	b, err := g.bind(arg, ret)
	if err != nil {
		return 0, nil, fmt.Errorf("lwt: OCaml binds %q as %v -> %v, but Go registered it as func(%v) (%v, error): %w",
			name, arg, ret, g.argType, g.retType, err)
	}
	var bs []*binding
	if old := registry.bindings.Load(); old != nil {
		bs = *old
	}
	bs = append(bs[:len(bs):len(bs)], b)
	registry.bindings.Store(&bs)
	g.bindings[key] = len(bs) - 1
	return len(bs) - 1, g, nil
}

func bindingByID(id int) (*binding, error) {
	if bs := registry.bindings.Load(); bs != nil && id >= 0 && id < len(*bs) {
		return (*bs)[id], nil
	}
	return nil, fmt.Errorf("lwt: no Go function #%d", id)
}

// inCall is an OCaml→Go call in flight: OCaml waits on the Lwt promise
// whose resolver stubs.c keeps as number resolver. Lwt thread only, but
// for its context, which is the call itself (callContext).
type inCall struct {
	callContext
	id       int64
	l        *loop
	resolver C.intptr_t
	done     bool
	shutDown bool // shutdown, not Lwt.cancel, ended the context
}

// newInCall numbers the call, in l.inCalls by the id OCaml cancels it
// with. Lwt thread only.
func (l *loop) newInCall(resolver C.intptr_t) (int64, *inCall) {
	c := &inCall{l: l, resolver: resolver}
	c.id = l.inCalls.add(c)
	return c.id, c
}

// end forgets the call; it reports false if the call had ended already.
func (c *inCall) end() bool {
	if c.done {
		return false
	}
	c.done = true
	c.l.inCalls.take(c.id)
	c.cancel()
	return true
}

func (c *inCall) resolve(v value) {
	if c.end() {
		C.lwt_wakeup(c.resolver, v)
	}
}

func (c *inCall) reject(err error) {
	if c.end() {
		head, msg := errorParts(err, c.shutDown)
		C.lwt_wakeup_exn(c.resolver, unsafe.Pointer(unsafe.SliceData(head)), C.size_t(len(head)), msg)
	}
}

// cancelInCall cancels the context of call id, if it is still in flight.
func (l *loop) cancelInCall(id int64) {
	if c := l.inCalls.get(id); c != nil {
		c.cancel()
	}
}

// cancelAllInCalls cancels the context of every OCaml→Go call in flight,
// at shutdown.
func (l *loop) cancelAllInCalls() {
	for _, c := range l.inCalls.slots {
		if c != nil && !c.ended.Load() {
			c.shutDown = true
			c.cancel()
		}
	}
}

// rejectAllInCalls cancels every OCaml→Go call in flight and rejects its
// promise with err, at shutdown.
func (l *loop) rejectAllInCalls(err error) {
	for _, c := range l.inCalls.slots {
		if c != nil {
			c.reject(err)
		}
	}
}

// inCallTable numbers the OCaml→Go calls in flight: a call's id is its
// slot and the slot's generation (gen<<32 | slot), so that a late cancel
// from OCaml names no call that reused the slot. Lwt thread only, but for
// live, which CurrentStats reads. It is callTable's twin (func.go) on
// purpose: a table shared by both (generic, or with the calls' slices
// apart) cost 45 instructions per seed round trip (make bench-instr).
type inCallTable struct {
	slots []*inCall
	gens  []uint32
	free  []int
	live  atomic.Int64
}

func (t *inCallTable) add(c *inCall) int64 {
	t.live.Add(1)
	var slot int
	if n := len(t.free); n > 0 {
		slot = t.free[n-1]
		t.free = t.free[:n-1]
		t.slots[slot] = c
	} else {
		slot = len(t.slots)
		t.slots = append(t.slots, c)
		t.gens = append(t.gens, 0)
	}
	t.gens[slot] = (t.gens[slot] + 1) & genMask
	return int64(t.gens[slot])<<slotBits | int64(slot)
}

// get returns call id, or nil if it is not in flight.
func (t *inCallTable) get(id int64) *inCall {
	slot, gen := int(id&(1<<slotBits-1)), uint32(id>>slotBits)
	if id < 0 || slot >= len(t.slots) || t.gens[slot] != gen {
		return nil
	}
	return t.slots[slot]
}

func (t *inCallTable) take(id int64) {
	if c := t.get(id); c != nil {
		slot := int(id & (1<<slotBits - 1))
		t.slots[slot] = nil
		t.free = append(t.free, slot)
		t.live.Add(-1)
	}
}

// callContext is the context of an OCaml→Go call, ended by Lwt.cancel of
// its promise, by the call's end, or by shutdown. Cheaper than
// context.WithCancel: it is part of the call, makes its Done channel only
// when asked, and Err and a made Done read atomics, without the lock (a
// loop task reads both at every call into OCaml). Safe from any goroutine.
type callContext struct {
	ended  atomic.Bool
	done   atomic.Pointer[chan struct{}] // made by Done
	mu     sync.Mutex                    // serialises Done's making, AfterFunc and cancel
	afters []*afterCall                  // AfterFunc's, until the end
}

type afterCall struct{ fn func() }

var closedDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *callContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *callContext) Value(any) any               { return nil }

func (c *callContext) Done() <-chan struct{} {
	if d := c.done.Load(); d != nil {
		return *d
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.done.Load(); d != nil {
		return *d
	}
	d := closedDone
	if !c.ended.Load() {
		d = make(chan struct{})
	}
	c.done.Store(&d)
	return d
}

func (c *callContext) Err() error {
	if c.ended.Load() {
		return context.Canceled
	}
	return nil
}

// AfterFunc runs fn in a goroutine once the context ends (as
// context.AfterFunc does for its own contexts, which it finds through this
// method).
func (c *callContext) AfterFunc(fn func()) (stop func() bool) {
	a := &afterCall{fn: fn}
	c.mu.Lock()
	if c.ended.Load() {
		c.mu.Unlock()
		go fn()
		return func() bool { return false }
	}
	c.afters = append(c.afters, a)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, x := range c.afters {
			if x == a {
				c.afters = append(c.afters[:i], c.afters[i+1:]...)
				return true
			}
		}
		return false
	}
}

func (c *callContext) cancel() {
	c.mu.Lock()
	if c.ended.Load() {
		c.mu.Unlock()
		return
	}
	c.ended.Store(true)
	if d := c.done.Load(); d != nil {
		close(*d)
	}
	afters := c.afters
	c.afters = nil
	c.mu.Unlock()
	for _, a := range afters {
		go a.fn()
	}
}
