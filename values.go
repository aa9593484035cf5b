package lwt

// How values cross: the codec of each Go type, chosen once per type (by
// codecOf), converts to and from OCaml values on the Lwt thread only; an
// OCaml value (value) is valid only until the next call into OCaml. Options,
// lists and pairs cross as one flat buffer (wire). Handle and Value hold a
// value of the other side across calls.

/*
#include "ocaml_api.h"
*/
import "C"

import (
	"bytes"
	"encoding/binary"
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
	valUnit  value = 1 // Val_unit
	valFalse value = 1 // Val_false
	valTrue  value = 3 // Val_true
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

// Pair is an OCaml pair ('a * 'b).
type Pair[A, B any] struct {
	First  A
	Second B
}

func (Pair[A, B]) ocamlPair() {}

// codec converts between an OCaml type and the Go type T, on the Lwt thread.
type codec[T any] struct {
	sig    string // the OCaml type, as Lwt_interop.Ty spells it
	decode func(v value) (T, error)
	encode func(x T) (value, error)
}

// codecOf returns the codec for T, or an error naming T if T cannot cross.
func codecOf[T any]() (*codec[T], error) {
	switch any((*T)(nil)).(type) {
	case *struct{}:
		return scalar[T]("unit", func(value) struct{} { return struct{}{} },
			func(struct{}) (value, error) { return valUnit, nil }), nil
	case *bool:
		return scalar[T]("bool", func(v value) bool { return v != valFalse }, encodeBool), nil
	case *int64:
		return scalar[T]("int", intVal, encodeInt), nil
	case *int:
		return scalar[T]("int", func(v value) int { return int(intVal(v)) },
			func(n int) (value, error) { return encodeInt(int64(n)) }), nil
	case *float64:
		return scalar[T]("float", func(v value) float64 { return float64(C.lwt_double_val(v)) },
			func(x float64) (value, error) { return C.lwt_copy_double(C.double(x)), nil }), nil
	case *string:
		return scalar[T]("string", stringVal, copyString), nil
	case *[]byte:
		return scalar[T]("bytes", bytesVal, copyBytes), nil
	case **Value:
		return any(valueCodec).(*codec[T]), nil
	}
	var zero T
	if h, ok := any(zero).(handleType); ok {
		return h.handleCodec().(*codec[T]), nil
	}
	if fc, ok := any(zero).(closureType); ok {
		sig, hold, err := fc.closureCodec()
		if err != nil {
			return nil, err
		}
		return &codec[T]{
			sig: sig,
			decode: func(v value) (T, error) {
				f, err := hold(v)
				if err != nil {
					var zero T
					return zero, err
				}
				return f.(T), nil
			},
			encode: func(T) (value, error) {
				return 0, fmt.Errorf("lwt: a Go %T cannot be passed back to OCaml", zero)
			},
		}, nil
	}
	w, err := wireOf(reflect.TypeFor[T]())
	if err != nil {
		return nil, err
	}
	return compound[T](w), nil
}

// scalar is the codec of T made from functions on U, where T is U (codecOf's
// type switch has checked it): the conversions are free, nothing is boxed.
func scalar[T, U any](sig string, dec func(value) U, enc func(U) (value, error)) *codec[T] {
	return &codec[T]{
		sig: sig,
		decode: func(v value) (T, error) {
			u := dec(v)
			return *(*T)(unsafe.Pointer(&u)), nil
		},
		encode: func(x T) (value, error) { return enc(*(*U)(unsafe.Pointer(&x))) },
	}
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

// closureType is implemented by *Func[A, R], so that codecOf can build
// codecs for closure types without reflection.
type closureType interface {
	closureCodec() (sig string, hold func(v value) (any, error), err error)
}

// Handle is a Go value that OCaml holds without seeing inside it: an
// 'a Lwt_interop.handle (Ty.handle). OCaml's GC frees it. A handle that
// OCaml passes back where Go expects a Handle of another T is an error.
type Handle[T any] struct{ Value T }

var handlesLive atomic.Int64

type handleType interface{ handleCodec() any }

// handleCodec returns the *codec[Handle[T]] (as any, for codecOf's sake).
func (Handle[T]) handleCodec() any {
	return &codec[Handle[T]]{
		sig: "handle",
		decode: func(v value) (Handle[T], error) {
			id := C.lwt_handle_id(v)
			if id == 0 {
				return Handle[T]{}, errors.New("lwt: not a Go handle")
			}
			x := cgo.Handle(id).Value()
			t, ok := x.(T)
			if !ok && x != nil {
				return Handle[T]{}, fmt.Errorf("lwt: the handle holds a %T, not a %v", x, reflect.TypeFor[T]())
			}
			return Handle[T]{Value: t}, nil
		},
		encode: func(h Handle[T]) (value, error) {
			handlesLive.Add(1)
			mem := C.size_t(approxSize(reflect.ValueOf(&h.Value).Elem(), 2))
			return C.lwt_new_handle(C.uintptr_t(cgo.NewHandle(h.Value)), mem), nil
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
	sig: "opaque",
	decode: func(v value) (*Value, error) {
		root, err := newOCamlRef(v)
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

// compound is the codec of an option, list or pair: the value crosses as
// one flat buffer (see wire), in one call each way.
func compound[T any](w *wire) *codec[T] {
	return &codec[T]{
		sig: w.sig,
		decode: func(v value) (T, error) {
			var x T
			p := C.lwt_flatten(v, w.code)
			if p == nil {
				return x, fmt.Errorf("lwt: out of memory reading an OCaml %s", w.sig)
			}
			defer C.free(unsafe.Pointer(p))
			w.get(unsafe.Slice((*byte)(unsafe.Pointer(p)), int(C.lwt_out_len)), reflect.ValueOf(&x).Elem())
			return x, nil
		},
		encode: func(x T) (value, error) {
			b, err := w.put(nil, reflect.ValueOf(x))
			if err != nil {
				return 0, err
			}
			if v := C.lwt_build(w.code, unsafe.Pointer(unsafe.SliceData(b))); v != 0 {
				return v, nil
			}
			return 0, errAlloc("a "+w.sig, len(b))
		},
	}
}

// wire is how a Go type crosses inside a compound value. Go writes the
// value into a flat buffer that stubs.c turns into the OCaml value, and
// stubs.c flattens an OCaml value into a buffer that Go reads. code is the
// type's shape, which stubs.c follows:
//
//	u unit  b bool  i int  f float  s string  y bytes
//	o<T> option  l<T> list  p<T><U> pair
//
// In the buffer a bool is one byte; an int or a float eight bytes in the
// machine's byte order; a string or bytes an eight-byte length and the
// bytes; an option a byte 0 (None) or 1 and the value; a list an eight-byte
// length and the elements; a pair its two values.
type wire struct {
	code, sig string
	put       func(b []byte, v reflect.Value) ([]byte, error)
	get       func(b []byte, v reflect.Value) []byte // sets v, returns the rest of b
}

var (
	byteOrder = binary.NativeEndian
	pairType  = reflect.TypeFor[interface{ ocamlPair() }]()
)

func wireOf(t reflect.Type) (*wire, error) {
	switch t {
	case reflect.TypeFor[struct{}]():
		return &wire{code: "u", sig: "unit",
			put: func(b []byte, _ reflect.Value) ([]byte, error) { return b, nil },
			get: func(b []byte, _ reflect.Value) []byte { return b },
		}, nil
	case reflect.TypeFor[bool]():
		return &wire{code: "b", sig: "bool",
			put: func(b []byte, v reflect.Value) ([]byte, error) {
				if v.Bool() {
					return append(b, 1), nil
				}
				return append(b, 0), nil
			},
			get: func(b []byte, v reflect.Value) []byte { v.SetBool(b[0] != 0); return b[1:] },
		}, nil
	case reflect.TypeFor[int64](), reflect.TypeFor[int]():
		return &wire{code: "i", sig: "int",
			put: func(b []byte, v reflect.Value) ([]byte, error) {
				n := v.Int()
				if _, err := encodeInt(n); err != nil {
					return nil, err
				}
				return byteOrder.AppendUint64(b, uint64(n)), nil
			},
			get: func(b []byte, v reflect.Value) []byte { v.SetInt(int64(byteOrder.Uint64(b))); return b[8:] },
		}, nil
	case reflect.TypeFor[float64]():
		return &wire{code: "f", sig: "float",
			put: func(b []byte, v reflect.Value) ([]byte, error) {
				return byteOrder.AppendUint64(b, math.Float64bits(v.Float())), nil
			},
			get: func(b []byte, v reflect.Value) []byte {
				v.SetFloat(math.Float64frombits(byteOrder.Uint64(b)))
				return b[8:]
			},
		}, nil
	case reflect.TypeFor[string]():
		return &wire{code: "s", sig: "string",
			put: func(b []byte, v reflect.Value) ([]byte, error) {
				return append(byteOrder.AppendUint64(b, uint64(v.Len())), v.String()...), nil
			},
			get: func(b []byte, v reflect.Value) []byte {
				n := int(byteOrder.Uint64(b))
				v.SetString(string(b[8 : 8+n]))
				return b[8+n:]
			},
		}, nil
	case reflect.TypeFor[[]byte]():
		return &wire{code: "y", sig: "bytes",
			put: func(b []byte, v reflect.Value) ([]byte, error) {
				return append(byteOrder.AppendUint64(b, uint64(v.Len())), v.Bytes()...), nil
			},
			get: func(b []byte, v reflect.Value) []byte {
				n := int(byteOrder.Uint64(b))
				v.SetBytes(bytes.Clone(b[8 : 8+n]))
				return b[8+n:]
			},
		}, nil
	}
	switch {
	case t.Kind() == reflect.Pointer && !t.Implements(reflect.TypeFor[closureType]()):
		return optionWire(t)
	case t.Kind() == reflect.Slice:
		return listWire(t)
	case t.Kind() == reflect.Struct && t.Implements(pairType):
		return pairWire(t)
	case t.Implements(reflect.TypeFor[closureType]()):
		return nil, fmt.Errorf("lwt: Go type %v cannot cross inside an option, list or pair", t)
	}
	return nil, fmt.Errorf("lwt: Go type %v cannot cross to OCaml", t)
}

// optionWire: a nil *T is None, any other Some.
func optionWire(t reflect.Type) (*wire, error) {
	e, err := wireOf(t.Elem())
	if err != nil {
		return nil, err
	}
	return &wire{code: "o" + e.code, sig: e.sig + " option",
		put: func(b []byte, v reflect.Value) ([]byte, error) {
			if v.IsNil() {
				return append(b, 0), nil
			}
			return e.put(append(b, 1), v.Elem())
		},
		get: func(b []byte, v reflect.Value) []byte {
			if b[0] == 0 {
				v.SetZero()
				return b[1:]
			}
			p := reflect.New(t.Elem())
			v.Set(p)
			return e.get(b[1:], p.Elem())
		},
	}, nil
}

// listWire: a slice is a list; a nil slice is [].
func listWire(t reflect.Type) (*wire, error) {
	e, err := wireOf(t.Elem())
	if err != nil {
		return nil, err
	}
	return &wire{code: "l" + e.code, sig: e.sig + " list",
		put: func(b []byte, v reflect.Value) ([]byte, error) {
			b = byteOrder.AppendUint64(b, uint64(v.Len()))
			for i := range v.Len() {
				var err error
				if b, err = e.put(b, v.Index(i)); err != nil {
					return nil, err
				}
			}
			return b, nil
		},
		get: func(b []byte, v reflect.Value) []byte {
			n := int(byteOrder.Uint64(b))
			b = b[8:]
			s := reflect.MakeSlice(t, n, n)
			for i := range n {
				b = e.get(b, s.Index(i))
			}
			v.Set(s)
			return b
		},
	}, nil
}

func pairWire(t reflect.Type) (*wire, error) {
	a, err := wireOf(t.Field(0).Type)
	if err != nil {
		return nil, err
	}
	z, err := wireOf(t.Field(1).Type)
	if err != nil {
		return nil, err
	}
	return &wire{code: "p" + a.code + z.code, sig: "(" + a.sig + " * " + z.sig + ")",
		put: func(b []byte, v reflect.Value) ([]byte, error) {
			b, err := a.put(b, v.Field(0))
			if err != nil {
				return nil, err
			}
			return z.put(b, v.Field(1))
		},
		get: func(b []byte, v reflect.Value) []byte { return z.get(a.get(b, v.Field(0)), v.Field(1)) },
	}, nil
}
