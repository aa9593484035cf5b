package lwt

// How values cross: the codec of a Go type and the OCaml type it is bound
// to, made once when a function is bound or looked up (codecFor, any
// goroutine), converts values on the Lwt thread only; an OCaml value
// (value) is valid only until the next call into OCaml, and no decoding
// calls OCaml (so that the values of a list of arguments stay put). The types of
// ty.ml's direct values cross as themselves, the others as a flat buffer
// (flat.go). Handle and Value hold a value of the other side across calls.

/*
#include "ocaml_api.h"
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime/cgo"
	"sync/atomic"
	"unsafe"
)

// value is an OCaml value seen from Go: valid only until the next call into
// OCaml, and only on the Lwt thread.
type value = C.lwt_value

const (
	valEmptyList value = 1 // Val_emptylist
	valUnit      value = 1 // Val_unit
	valFalse     value = 1 // Val_false
	valTrue      value = 3 // Val_true
)

// OCaml's int is 63 bits wide.
const (
	minOCamlInt = math.MinInt64 >> 1
	maxOCamlInt = math.MaxInt64 >> 1
)

func valInt(n int64) value { return value(n<<1 | 1) }
func intVal(v value) int64 { return int64(v) >> 1 }

// errAlloc reports an OCaml allocation that failed (Out_of_memory).
func errAlloc(what string, n int) error {
	return fmt.Errorf("lwt: OCaml could not allocate %s of %d bytes (Out_of_memory)", what, n)
}

func copyString(s string) (value, error) {
	if v := C.lwt_copy_string(s); v != 0 {
		return v, nil
	}
	return 0, errAlloc("a string", len(s))
}

func copyBytes(b []byte) (value, error) {
	if v := C.lwt_copy_bytes(unsafe.Pointer(unsafe.SliceData(b)), C.size_t(len(b))); v != 0 {
		return v, nil
	}
	return 0, errAlloc("a bytes", len(b))
}

// stringData is the content of an OCaml string or bytes, in OCaml's heap:
// valid until the next call into OCaml.
func stringData(v value) []byte {
	p := C.lwt_string_data(v)
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(C.lwt_out_len))
}

func stringVal(v value) string { return string(stringData(v)) }
func bytesVal(v value) []byte  { return bytes.Clone(stringData(v)) }

// codec converts between an OCaml type and the Go type T, on the Lwt thread.
type codec[T any] struct {
	decode func(v value) (T, error)
	encode func(x T) (value, error)
}

// direction is which way a codec's values go: a function's argument goes
// from OCaml to Go when Go registered the function, from Go to OCaml when
// OCaml did; the result the other way.
type direction bool

const (
	fromOCaml direction = false
	toOCaml   direction = true
)

func (d direction) reverse() direction { return !d }

// codecFor matches the OCaml type o with T, for values going dir, and
// returns their codec, or an error naming both. Any goroutine.
func codecFor[T any](o *otype, dir direction) (*codec[T], error) {
	t := reflect.TypeFor[T]()
	var zero T
	switch o.code {
	case 'h':
		if h, ok := any(zero).(handleType); ok && isLwtGeneric(t, "Handle") {
			return h.handleCodec().(*codec[T]), nil
		}
		return nil, mismatch(o, t, "an OCaml handle is a Go lwt.Handle[T]")
	case 'o':
		if c, ok := any(valueCodec).(*codec[T]); ok {
			return c, nil
		}
		return nil, mismatch(o, t, "an OCaml Opaque.t is a Go *lwt.Value")
	case 'F', 'S':
		return functionCodec[T](o, dir)
	case 'M':
		at, ok := any(zero).(argsType)
		if !ok || !isLwtGeneric(t, "Args2", "Args3", "Args4") {
			return nil, mismatch(o, t, "several arguments are a Go lwt.Args2, Args3 or Args4 (see lwt.Fn2)")
		}
		return argsCodec[T](o, at, dir)
	case 'P':
		pt, ok := any(zero).(promiseType)
		if !ok {
			return nil, mismatch(o, t, "an OCaml promise is a Go *lwt.Promise[T]")
		}
		return heldCodec[T](o, pt.promiseCodec)
	case 'Q':
		st, ok := any(zero).(streamType)
		if !ok {
			return nil, mismatch(o, t, "an OCaml Lwt_stream.t is a Go *lwt.Stream[T]")
		}
		return heldCodec[T](o, st.streamCodec)
	}
	if err := checkKind(o, t); err != nil {
		return nil, err
	}
	switch o.code {
	case 'u':
		return &codec[T]{
			decode: func(value) (T, error) { var unit T; return unit, nil },
			encode: func(T) (value, error) { return valUnit, nil },
		}, nil
	case 'b':
		return &codec[T]{
			decode: func(v value) (T, error) { return as[T](v != valFalse), nil },
			encode: func(x T) (value, error) { return encodeBool(as[bool](x)) },
		}, nil
	case 'i': // Go's int is int64's size: cgo needs 64 bits
		return &codec[T]{
			decode: func(v value) (T, error) { return as[T](intVal(v)), nil },
			encode: func(x T) (value, error) { return encodeInt(as[int64](x)) },
		}, nil
	case 'c':
		return &codec[T]{
			decode: func(v value) (T, error) { return as[T](byte(intVal(v))), nil },
			encode: func(x T) (value, error) { return valInt(int64(as[byte](x))), nil },
		}, nil
	case 'f':
		return &codec[T]{
			decode: func(v value) (T, error) { return as[T](float64(C.lwt_double_val(v))), nil },
			encode: func(x T) (value, error) { return C.lwt_copy_double(C.double(as[float64](x))), nil },
		}, nil
	case 's':
		return &codec[T]{
			decode: func(v value) (T, error) { return as[T](stringVal(v)), nil },
			encode: func(x T) (value, error) { return copyString(as[string](x)) },
		}, nil
	case 'y':
		return &codec[T]{
			decode: func(v value) (T, error) { return as[T](bytesVal(v)), nil },
			encode: func(x T) (value, error) { return copyBytes(as[[]byte](x)) },
		}, nil
	}
	return bufferedCodec[T](o, t)
}

// functionCodec is the codec of a function: an OCaml closure that Go
// holds (*Func, from OCaml), or a Go function that OCaml holds (*Callback,
// to OCaml).
func functionCodec[T any](o *otype, dir direction) (*codec[T], error) {
	t := reflect.TypeFor[T]()
	var zero T
	sync := o.code == 'S'
	_, isFunc := any(zero).(closureType)
	_, isCallback := any(zero).(callbackType)
	switch {
	case isFunc && dir == toOCaml:
		return nil, mismatch(o, t, "a Go function that OCaml calls is an *lwt.Callback (an *lwt.Func is OCaml's function, which Go calls)")
	case isCallback && dir == fromOCaml:
		return nil, mismatch(o, t, "an OCaml function that Go calls is an *lwt.Func (an *lwt.Callback is Go's function, which OCaml calls)")
	}
	if fc, ok := any(zero).(closureType); ok {
		hold, err := fc.closureCodec(o.elems[0], o.elems[1], sync)
		if err != nil {
			return nil, within(fmt.Sprintf("in %v", o), err)
		}
		return &codec[T]{
			decode: typed[T](hold),
			encode: func(T) (value, error) { panic("lwt: an *lwt.Func bound to go to OCaml") }, // refused above
		}, nil
	}
	if cb, ok := any(zero).(callbackType); ok {
		enc, err := cb.callbackCodec(o.elems[0], o.elems[1], sync)
		if err != nil {
			return nil, within(fmt.Sprintf("in %v", o), err)
		}
		return &codec[T]{
			decode: func(value) (T, error) { panic("lwt: an *lwt.Callback bound to come from OCaml") }, // refused above
			encode: func(x T) (value, error) { return enc(x) },
		}, nil
	}
	return nil, mismatch(o, t, "an OCaml closure is a Go *lwt.Func[A, R], a Go function an *lwt.Callback[A, R]")
}

// as converts x to T, whose underlying type is U (checkKind has checked
// it): free, nothing is boxed.
func as[T, U any](x U) T { return *(*T)(unsafe.Pointer(&x)) }

// flatScratch is the buffer that values crossing to OCaml are written in,
// reused: Lwt thread only.
var flatScratch []byte

// bufferedCodec is the codec of a type that crosses as a flat buffer
// (flat.go): OCaml hands its writer, Go hands bytes.
func bufferedCodec[T any](o *otype, t reflect.Type) (*codec[T], error) {
	c, err := flatCodecOf(o, t)
	if err != nil {
		return nil, err
	}
	return &codec[T]{
		decode: func(v value) (T, error) {
			var x T
			p := C.lwt_flat_data(v)
			r := flatReader{b: unsafe.Slice((*byte)(unsafe.Pointer(p)), int(C.lwt_out_len))}
			c.get(&r, unsafe.Pointer(&x))
			if r.err == nil && len(r.b) != 0 {
				r.err = errMalformed
			}
			return x, r.err
		},
		encode: func(x T) (value, error) {
			b, err := c.put(flatScratch[:0], unsafe.Pointer(&x))
			if err != nil {
				return 0, err
			}
			flatScratch = nil // in use: copying may run OCaml code, which may encode
			v := C.lwt_copy_bytes(unsafe.Pointer(unsafe.SliceData(b)), C.size_t(len(b)))
			if cap(b) <= 1<<20 {
				flatScratch = b[:0]
			}
			if v == 0 {
				return 0, errAlloc("a "+o.String(), len(b))
			}
			return v, nil
		},
	}, nil
}

func encodeBool(b bool) (value, error) {
	if b {
		return valTrue, nil
	}
	return valFalse, nil
}

func encodeInt(n int64) (value, error) {
	if n < minOCamlInt || n > maxOCamlInt {
		return 0, fmt.Errorf("lwt: %d does not fit OCaml's 63-bit int", n)
	}
	return valInt(n), nil
}

// heldCodec is the codec of a value that crosses as a function (a promise,
// a stream), from its element's codecs over any.
func heldCodec[T any](o *otype, codecs func(elem *otype) (func(value) (any, error), func(any) (value, error), error)) (*codec[T], error) {
	dec, enc, err := codecs(o.elems[0])
	if err != nil {
		return nil, within(fmt.Sprintf("in %v", o), err)
	}
	return &codec[T]{decode: typed[T](dec), encode: func(x T) (value, error) { return enc(x) }}, nil
}

// typed is a decoder over any (a function's, a promise's, a stream's, which
// make the Go value themselves) as a decoder of T.
func typed[T any](dec func(value) (any, error)) func(value) (T, error) {
	return func(v value) (T, error) {
		x, err := dec(v)
		if err != nil {
			var zero T
			return zero, err
		}
		return x.(T), nil
	}
}

// closureType is implemented by *Func[A, R], so that codecOf can build
// codecs for closure types without reflection.
type closureType interface {
	closureCodec(arg, ret *otype, sync bool) (hold func(v value) (any, error), err error)
}

// Handle is a Go value that OCaml holds without seeing inside it: an
// 'a Lwt_interop.handle (Ty.handle). OCaml's GC frees it. A handle that
// OCaml passes back where Go expects a Handle of another T is an error.
type Handle[T any] struct{ Value T }

var handlesLive atomic.Int64

type handleType interface{ handleCodec() any }

// valueType is T, for the error of a handle read as another Handle.
func (Handle[T]) valueType() reflect.Type { return reflect.TypeFor[T]() }

// heldType is the Go type of what the cgo handle x holds, for an error.
func heldType(x any) any {
	if h, ok := x.(interface{ valueType() reflect.Type }); ok {
		return h.valueType()
	}
	return reflect.TypeOf(x) // a callback's *binding
}

// handleCodec returns the *codec[Handle[T]] (as any, for codecOf's sake).
func (Handle[T]) handleCodec() any {
	return &codec[Handle[T]]{
		decode: func(v value) (Handle[T], error) {
			id := C.lwt_handle_id(v)
			if id == 0 {
				return Handle[T]{}, errors.New("lwt: not a Go handle")
			}
			// The cgo handle holds the Handle[T], not its Value: a nil
			// interface value keeps its type.
			x := cgo.Handle(id).Value()
			h, ok := x.(Handle[T])
			if !ok {
				return Handle[T]{}, fmt.Errorf("lwt: the handle holds a %v, not a %v", heldType(x), reflect.TypeFor[T]())
			}
			return h, nil
		},
		encode: func(h Handle[T]) (value, error) {
			handlesLive.Add(1)
			mem := C.size_t(approxSize(reflect.ValueOf(&h.Value).Elem(), 2))
			return C.lwt_new_handle(C.uintptr_t(cgo.NewHandle(h)), mem), nil
		},
	}
}

// approxSize estimates the memory that v keeps alive, following pointers,
// slices, strings, maps and interfaces depth levels deep: what a handle
// tells OCaml's GC, so that dropped handles of large Go values are
// collected soon (OCaml's GC speeds up with it, as for bigarrays).
func approxSize(v reflect.Value, depth int) uintptr {
	size := v.Type().Size()
	if depth == 0 {
		return size
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			size += approxSize(v.Elem(), depth-1)
		}
	case reflect.String:
		size += uintptr(v.Len())
	case reflect.Slice:
		size += uintptr(v.Cap()) * v.Type().Elem().Size()
		if v.Type().Elem().Kind() != reflect.Uint8 {
			for i := range min(v.Len(), 64) { // a sample: handles of huge slices are rare
				size += approxSize(v.Index(i), depth-1) - v.Type().Elem().Size()
			}
		}
	case reflect.Map:
		size += uintptr(v.Len()) * (v.Type().Key().Size() + v.Type().Elem().Size())
	case reflect.Struct:
		for i := range v.NumField() {
			size += approxSize(v.Field(i), depth-1) - v.Field(i).Type().Size()
		}
	}
	return size
}

// freeHandle deletes a handle that OCaml's GC collected.
func freeHandle(h uintptr) {
	if b, ok := cgo.Handle(h).Value().(*binding); ok && b.released != nil {
		b.released()
	}
	cgo.Handle(h).Delete()
	handlesLive.Add(-1)
}

// Value is an OCaml value that Go holds without seeing inside it
// (Lwt_interop.Ty.opaque), to hand it back to OCaml later. Like a Func, it
// keeps the value alive until Release, until the Value is garbage
// collected, or until the bridge shuts down.
type Value struct{ root *ocamlRef }

// Release lets the OCaml GC collect the value; handing it to OCaml later
// fails with ErrReleased. Safe from any goroutine.
func (v *Value) Release() { v.root.release() }

var valueCodec = &codec[*Value]{
	decode: func(v value) (*Value, error) {
		root, err := newOCamlRef(v, false)
		if err != nil {
			return nil, err
		}
		return &Value{root: root}, nil
	},
	encode: func(x *Value) (value, error) {
		if x == nil {
			return 0, errors.New("lwt: a nil *lwt.Value cannot be passed to OCaml")
		}
		if err := x.root.usable(); err != nil {
			return 0, err
		}
		return C.lwt_root_get(x.root.cell.root), nil
	},
}
