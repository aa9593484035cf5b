package lwt

// Go functions and promises as values. A Callback crosses to OCaml as a
// closure (Lwt_interop.Ty.func, or Ty.sync_func for one made by
// SyncCallback), which holds the function through a runtime/cgo handle
// until OCaml's GC collects it. A Promise crosses both ways as an 'a Lwt.t
// (Ty.promise): to OCaml, as a Callback that awaits it, which OCaml calls
// at once; from OCaml, as a closure returning the Lwt promise, which Go
// calls from a job (soon). Made on any goroutine; crosses and runs on the Lwt thread
// (a Callback's function as its kind says: goroutine, task or sync).

/*
#include "ocaml_api.h"
*/
import "C"

import (
	"context"
	"fmt"
	"reflect"
	"runtime/cgo"
)

// Callback is a Go function that OCaml receives as a closure: an
// 'a -> 'b Lwt.t (Ty.func), or an 'a -> 'b (Ty.sync_func) for one made by
// SyncCallback. Each call runs fn as a function registered with the same
// kind would run (Register, RegisterTask, RegisterSync). The same
// Callback may cross any number of times.
type Callback[A, R any] struct {
	g  *goFunc
	fn func(context.Context, A) (R, error)
	// released, if set, runs when OCaml's GC frees a closure of this
	// Callback, in its finaliser: it must not call OCaml.
	released func()
}

// NewCallback is a Callback whose calls each run fn in a new goroutine.
func NewCallback[A, R any](fn func(context.Context, A) (R, error)) *Callback[A, R] {
	return newCallback(kindGoroutine, fn)
}

// TaskCallback is a Callback whose calls each run fn as a loop task.
func TaskCallback[A, R any](fn func(context.Context, A) (R, error)) *Callback[A, R] {
	return newCallback(kindTask, fn)
}

// SyncCallback is a Callback that runs fn directly on the Lwt thread: in
// OCaml, an 'a -> 'b (Ty.sync_func), or an 'a -> 'b Lwt.t whose promise is
// settled at once (Ty.func).
func SyncCallback[A, R any](fn func(A) (R, error)) *Callback[A, R] {
	return newCallback(kindSync, func(_ context.Context, a A) (R, error) { return fn(a) })
}

func newCallback[A, R any](k kind, fn func(context.Context, A) (R, error)) *Callback[A, R] {
	name := fmt.Sprintf("a %s Callback[%v, %v]", k, reflect.TypeFor[A](), reflect.TypeFor[R]())
	return &Callback[A, R]{g: &goFunc{name: name, kind: k, holder: &holder{name: name}}, fn: fn}
}

// callbackType is implemented by *Callback[A, R], so that codecFor can
// build its codec without reflection.
type callbackType interface {
	callbackCodec(arg, ret *otype, sync bool) (encode func(any) (value, error), err error)
}

// callbackCodec binds the function to OCaml's view of its types once; each
// crossing then hands OCaml a new handle to the binding.
func (*Callback[A, R]) callbackCodec(arg, ret *otype, sync bool) (func(any) (value, error), error) {
	dec, err := codecFor[A](arg, fromOCaml)
	if err != nil {
		return nil, within("argument", err)
	}
	enc, err := codecFor[R](ret, toOCaml)
	if err != nil {
		return nil, within("result", err)
	}
	return func(x any) (value, error) {
		c := x.(*Callback[A, R])
		if c == nil {
			return 0, fmt.Errorf("lwt: a nil *Callback[%v, %v] cannot cross to OCaml", reflect.TypeFor[A](), reflect.TypeFor[R]())
		}
		if sync && c.g.kind != kindSync {
			return 0, fmt.Errorf("lwt: %s crosses as an OCaml plain function ('a -> 'b) only if made by SyncCallback", c.g.name)
		}
		handlesLive.Add(1)
		b := bindFunc(c.g, c.fn, dec, enc)
		b.released = c.released
		return C.lwt_new_handle(C.uintptr_t(cgo.NewHandle(b)), C.size_t(reflect.TypeFor[binding]().Size())), nil
	}, nil
}

// calledBinding is the binding that the closure of a Callback holds, from
// the handle OCaml passes back.
func calledBinding(h C.uintptr_t) (*binding, error) {
	if b, ok := cgo.Handle(h).Value().(*binding); ok {
		return b, nil
	}
	return nil, fmt.Errorf("lwt: handle %d is not a Go Callback", h)
}

// promiseType is implemented by *Promise[T], so that codecFor can build
// its codec without reflection.
type promiseType interface {
	promiseCodec(elem *otype) (decode func(value) (any, error), encode func(any) (value, error), err error)
}

// promiseCodec: OCaml's promise arrives as a closure returning it, which
// Go calls at once (Func.Go: Promise.Cancel is Lwt.cancel); Go's promise
// leaves as a TaskCallback that awaits it, which OCaml calls at once
// (Lwt.cancel ends the wait, and cancels the promise).
func (*Promise[T]) promiseCodec(elem *otype) (func(value) (any, error), func(any) (value, error), error) {
	fn := &otype{code: 'F', elems: []*otype{{code: 'u'}, elem}}
	hold, err := (*Func[struct{}, T])(nil).closureCodec(fn.elems[0], elem, false)
	if err != nil {
		return nil, nil, err
	}
	leave, err := (*Callback[struct{}, T])(nil).callbackCodec(fn.elems[0], elem, false)
	if err != nil {
		return nil, nil, err
	}
	decode := func(v value) (any, error) {
		f, err := hold(v)
		if err != nil {
			return nil, err
		}
		// Called by a job (a decoding calls no OCaml: argsCodec), which then
		// releases the closure: the call keeps what it needs.
		fn := f.(*Func[struct{}, T])
		p := fn.goCall(context.Background(), struct{}{}, true)
		fn.root.l.post(fn.Release)
		return p, nil
	}
	encode := func(x any) (value, error) {
		p := x.(*Promise[T])
		if p == nil {
			return 0, fmt.Errorf("lwt: a nil *Promise[%v] cannot cross to OCaml", reflect.TypeFor[T]())
		}
		return leave(TaskCallback(func(ctx context.Context, _ struct{}) (T, error) {
			v, err := p.Await(ctx)
			if ctx.Err() != nil { // Lwt.cancel of OCaml's promise, or shutdown
				p.Cancel()
			}
			return v, err
		}))
	}
	return decode, encode, nil
}
