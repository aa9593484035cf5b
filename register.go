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
	for _, t := range []reflect.Type{reflect.TypeFor[A](), reflect.TypeFor[R]()} {
		if err := crossable(t); err != nil {
			return fmt.Errorf("lwt: registering %q: %w", name, err)
		}
	}
	g := &goFunc{name: name, kind: k, bindings: map[string]int{},
		argType: reflect.TypeFor[A](), retType: reflect.TypeFor[R](),
		holder: &holder{name: fmt.Sprintf("the %s function %q", k, name)}}
	g.bind = func(arg, ret *otype) (*binding, error) {
		dec, err := codecFor[A](arg)
		if err != nil {
			return nil, within("argument", err)
		}
		enc, err := codecFor[R](ret)
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
		run := func() (R, error) { return fn(c.ctx, a) }
		switch g.kind {
		case kindSync: // a SyncCallback called as an 'a -> 'b Lwt.t
			r, err := recovered(run)
			settle(c, r, err)
			return
		case kindTask:
			t := &task{ctx: c.ctx, holder: g.holder}
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
// for ctx.
type inCall struct {
	id       int64
	l        *loop
	ctx      context.Context
	cancel   context.CancelFunc
	resolver C.intptr_t
	done     bool
}

// newInCall numbers the call, in l.inCalls by the id OCaml cancels it
// with. Lwt thread only.
func (l *loop) newInCall(resolver C.intptr_t) (int64, *inCall) {
	ctx, cancel := context.WithCancel(context.Background())
	l.nextInCall++
	c := &inCall{id: l.nextInCall, l: l, ctx: ctx, cancel: cancel, resolver: resolver}
	l.inCallsLive.Add(1)
	l.inCalls[c.id] = c
	return c.id, c
}

// end forgets the call; it reports false if the call had ended already.
func (c *inCall) end() bool {
	if c.done {
		return false
	}
	c.done = true
	delete(c.l.inCalls, c.id)
	c.cancel()
	c.l.inCallsLive.Add(-1)
	return true
}

func (c *inCall) resolve(v value) {
	if c.end() {
		C.lwt_wakeup(c.resolver, v)
	}
}

func (c *inCall) reject(err error) {
	if c.end() {
		head, msg := errorParts(err)
		C.lwt_wakeup_exn(c.resolver, unsafe.Pointer(unsafe.SliceData(head)), C.size_t(len(head)), msg)
	}
}

// cancelInCall cancels the context of call id, if it is still in flight.
func (l *loop) cancelInCall(id int64) {
	if c, ok := l.inCalls[id]; ok {
		c.cancel()
	}
}

// cancelAllInCalls cancels the context of every OCaml→Go call in flight,
// at shutdown.
func (l *loop) cancelAllInCalls() {
	for _, c := range l.inCalls {
		c.cancel()
	}
}

// rejectAllInCalls cancels every OCaml→Go call in flight and rejects its
// promise with err, at shutdown.
func (l *loop) rejectAllInCalls(err error) {
	for _, c := range l.inCalls {
		c.reject(err)
	}
}
