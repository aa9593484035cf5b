package lwt

// Functions of several arguments: OCaml's Ty.(a @-> b @-> returning r)
// is, in Go, a function of an Args2[A, B] (Args3, Args4), which Fn2 and
// SyncFn2 (and so on) make from a func(ctx, A, B) (R, error) or a
// func(A, B) (R, error). The arguments cross as an OCaml list of values,
// each as it would cross alone. Codecs are made on any goroutine, used on
// the Lwt thread.

/*
#include "ocaml_api.h"
*/
import "C"

import (
	"context"
	"fmt"
	"unsafe"
)

// Args2, Args3 and Args4 are the arguments of a function of several, in
// order: see Fn2 and SyncFn2. Go's Lookup of an OCaml function registered
// with Lwt_interop.register_fn takes them too.
type (
	Args2[A, B any] struct {
		First  A
		Second B
	}
	Args3[A, B, C any] struct {
		First  A
		Second B
		Third  C
	}
	Args4[A, B, C, D any] struct {
		First  A
		Second B
		Third  C
		Fourth D
	}
)

// Fn2 is fn as a function of its arguments together, for Register,
// RegisterTask, NewCallback and TaskCallback.
func Fn2[A, B, R any](fn func(context.Context, A, B) (R, error)) func(context.Context, Args2[A, B]) (R, error) {
	return func(ctx context.Context, a Args2[A, B]) (R, error) { return fn(ctx, a.First, a.Second) }
}

// Fn3 is Fn2 for three arguments.
func Fn3[A, B, C, R any](fn func(context.Context, A, B, C) (R, error)) func(context.Context, Args3[A, B, C]) (R, error) {
	return func(ctx context.Context, a Args3[A, B, C]) (R, error) { return fn(ctx, a.First, a.Second, a.Third) }
}

// Fn4 is Fn2 for four arguments.
func Fn4[A, B, C, D, R any](fn func(context.Context, A, B, C, D) (R, error)) func(context.Context, Args4[A, B, C, D]) (R, error) {
	return func(ctx context.Context, a Args4[A, B, C, D]) (R, error) {
		return fn(ctx, a.First, a.Second, a.Third, a.Fourth)
	}
}

// SyncFn2 is fn as a function of its arguments together, for RegisterSync
// and SyncCallback.
func SyncFn2[A, B, R any](fn func(A, B) (R, error)) func(Args2[A, B]) (R, error) {
	return func(a Args2[A, B]) (R, error) { return fn(a.First, a.Second) }
}

// SyncFn3 is SyncFn2 for three arguments.
func SyncFn3[A, B, C, R any](fn func(A, B, C) (R, error)) func(Args3[A, B, C]) (R, error) {
	return func(a Args3[A, B, C]) (R, error) { return fn(a.First, a.Second, a.Third) }
}

// SyncFn4 is SyncFn2 for four arguments.
func SyncFn4[A, B, C, D, R any](fn func(A, B, C, D) (R, error)) func(Args4[A, B, C, D]) (R, error) {
	return func(a Args4[A, B, C, D]) (R, error) { return fn(a.First, a.Second, a.Third, a.Fourth) }
}

// argCodec is one argument's codec, over the argument's place in the Args.
type argCodec struct {
	decode func(v value, p unsafe.Pointer) error
	encode func(p unsafe.Pointer) (value, error)
}

func argCodecOf[X any](o *otype, offset uintptr, dir direction) (argCodec, error) {
	c, err := codecFor[X](o, dir)
	if err != nil {
		return argCodec{}, err
	}
	return argCodec{
		decode: func(v value, p unsafe.Pointer) error {
			x, err := c.decode(v)
			*(*X)(unsafe.Add(p, offset)) = x
			return err
		},
		encode: func(p unsafe.Pointer) (value, error) { return c.encode(*(*X)(unsafe.Add(p, offset))) },
	}, nil
}

// argsType is implemented by Args2, Args3 and Args4, so that codecFor can
// build their codecs without reflection.
type argsType interface {
	argCodecs(os []*otype, dir direction) ([]argCodec, error)
}

// argCodecs matches OCaml's argument types with the Args's, in order.
func argCodecs(os []*otype, dir direction, makers ...func(*otype, direction) (argCodec, error)) ([]argCodec, error) {
	if len(os) != len(makers) {
		return nil, fmt.Errorf("OCaml's function takes %d arguments, Go's %d", len(os), len(makers))
	}
	cs := make([]argCodec, len(os))
	for i, o := range os {
		var err error
		if cs[i], err = makers[i](o, dir); err != nil {
			return nil, within(fmt.Sprintf("argument %d", i+1), err)
		}
	}
	return cs, nil
}

func argAt[X any](offset uintptr) func(*otype, direction) (argCodec, error) {
	return func(o *otype, dir direction) (argCodec, error) { return argCodecOf[X](o, offset, dir) }
}

func (a Args2[A, B]) argCodecs(os []*otype, dir direction) ([]argCodec, error) {
	return argCodecs(os, dir, argAt[A](unsafe.Offsetof(a.First)), argAt[B](unsafe.Offsetof(a.Second)))
}

func (a Args3[A, B, C]) argCodecs(os []*otype, dir direction) ([]argCodec, error) {
	return argCodecs(os, dir, argAt[A](unsafe.Offsetof(a.First)), argAt[B](unsafe.Offsetof(a.Second)),
		argAt[C](unsafe.Offsetof(a.Third)))
}

func (a Args4[A, B, C, D]) argCodecs(os []*otype, dir direction) ([]argCodec, error) {
	return argCodecs(os, dir, argAt[A](unsafe.Offsetof(a.First)), argAt[B](unsafe.Offsetof(a.Second)),
		argAt[C](unsafe.Offsetof(a.Third)), argAt[D](unsafe.Offsetof(a.Fourth)))
}

// argsCodec is the codec of T, an Args, for OCaml's list of arguments.
// Decoding reads the list's cells first: an argument's decoding calls no
// OCaml, so the list stays where it is meanwhile.
func argsCodec[T any](o *otype, at argsType, dir direction) (*codec[T], error) {
	cs, err := at.argCodecs(o.elems, dir)
	if err != nil {
		return nil, err
	}
	return &codec[T]{
		decode: func(list value) (T, error) {
			var x T
			for _, c := range cs {
				if err := c.decode(C.lwt_field(list, 0), unsafe.Pointer(&x)); err != nil {
					return x, err
				}
				list = C.lwt_field(list, 1)
			}
			return x, nil
		},
		encode: func(x T) (value, error) {
			list := C.lwt_root_new(valEmptyList)
			if list == nil {
				return 0, errAlloc("a list of arguments", len(cs))
			}
			defer C.lwt_root_free(list)
			for i := len(cs) - 1; i >= 0; i-- {
				v, err := cs[i].encode(unsafe.Pointer(&x))
				if err != nil {
					return 0, err
				}
				C.lwt_cons(list, v)
			}
			return C.lwt_root_get(list), nil
		},
	}, nil
}
