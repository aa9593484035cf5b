package lwt

// Values that cross as a flat buffer: options, lists, arrays, results,
// tuples, records, variants, int32 and int64, and any value inside them.
// flatCodecOf matches an OCaml type (ocamltype.go) with a Go type once,
// when a function is bound or looked up (any goroutine); the codec then
// writes and reads values on the Lwt thread. OCaml's side is ty.ml.
//
// The buffer holds the value's parts in order, little-endian, with no
// padding: a bool or char one byte; an int, float (its IEEE bits) or int64
// eight bytes; an int32 four; a string or bytes an eight-byte length and
// the bytes; an option a byte 0 (None) or 1 and the value; a list or array
// an eight-byte count and the elements; a result a byte 0 (Ok) or 1
// (Error) and the value; a tuple or record its parts in order; a variant
// its constructor's number (four bytes, from 0 in declaration order) and
// the constructor's argument, if any.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"time"
	"unsafe"
)

var le = binary.LittleEndian

// flatCodec writes and reads values of one Go type as one OCaml type. p
// points to the Go value: the codec knows its layout (from reflect, once),
// so that a value crosses without reflection but for slices, options and
// variants, which allocate through it.
type flatCodec struct {
	put func(b []byte, p unsafe.Pointer) ([]byte, error)
	get func(r *flatReader, p unsafe.Pointer)
	min int // the fewest bytes a value takes: bounds the counts a reader accepts
}

// flatReader reads a buffer that OCaml wrote; a malformed one (which OCaml
// never writes) is an error, never a panic or a huge allocation or loop.
type flatReader struct {
	b     []byte
	err   error
	empty int // elements of no bytes (units) read so far: bounded
}

// maxEmpty bounds the elements of no bytes in one value: a list of a
// million units crosses, a list of lists of units that a few bytes claim
// to hold 2^60 of does not.
const maxEmpty = 1 << 24

var errMalformed = errors.New("lwt: malformed value buffer")

func (r *flatReader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		r.err = errMalformed
		return make([]byte, 8)[:max(0, min(n, 8))]
	}
	x := r.b[:n:n]
	r.b = r.b[n:]
	return x
}

func (r *flatReader) u8() byte    { return r.take(1)[0] }
func (r *flatReader) u32() uint32 { return le.Uint32(r.take(4)) }
func (r *flatReader) u64() uint64 { return le.Uint64(r.take(8)) }

// bytes reads a string's or bytes' length and content, in the buffer.
func (r *flatReader) bytes() []byte {
	n := r.u64()
	if n > uint64(len(r.b)) {
		r.err = errMalformed
		return nil
	}
	return r.take(int(n))
}

// count reads a list's or array's length, each element at least min bytes.
func (r *flatReader) count(minSize int) int {
	n := r.u64()
	if minSize > 0 && n > uint64(len(r.b)/minSize) || minSize == 0 && n > uint64(maxEmpty-r.empty) {
		r.err = errMalformed
		return 0
	}
	if minSize == 0 {
		r.empty += int(n)
	}
	return int(n)
}

// mismatch is a bind-time error: OCaml's type and Go's differ.
func mismatch(o *otype, t reflect.Type, why string) error {
	msg := fmt.Sprintf("OCaml %v is not Go %v", o, t)
	if why != "" {
		msg += ": " + why
	}
	return errors.New(msg)
}

// within prefixes err with where it was found.
func within(where string, err error) error { return fmt.Errorf("%s: %w", where, err) }

// scalarCodec is the codec of a value of n bytes held in a T.
func scalarCodec[T any](n int, put func(b []byte, x T) ([]byte, error), get func(r *flatReader) T) *flatCodec {
	return &flatCodec{min: n,
		put: func(b []byte, p unsafe.Pointer) ([]byte, error) { return put(b, *(*T)(p)) },
		get: func(r *flatReader, p unsafe.Pointer) { *(*T)(p) = get(r) },
	}
}

func flatCodecOf(o *otype, t reflect.Type) (*flatCodec, error) {
	if err := checkKind(o, t); err != nil {
		return nil, err
	}
	switch o.code {
	case 'u':
		return &flatCodec{
			put: func(b []byte, _ unsafe.Pointer) ([]byte, error) { return b, nil },
			get: func(*flatReader, unsafe.Pointer) {},
		}, nil
	case 'b':
		return scalarCodec(1, func(b []byte, x bool) ([]byte, error) {
			if x {
				return append(b, 1), nil
			}
			return append(b, 0), nil
		}, func(r *flatReader) bool { return r.u8() != 0 }), nil
	case 'c':
		return scalarCodec(1, func(b []byte, x byte) ([]byte, error) { return append(b, x), nil }, (*flatReader).u8), nil
	case 'i': // Go's int is int64's size: cgo needs 64 bits
		return scalarCodec(8, func(b []byte, x int64) ([]byte, error) {
			if _, err := encodeInt(x); err != nil {
				return nil, err
			}
			return le.AppendUint64(b, uint64(x)), nil
		}, func(r *flatReader) int64 { return int64(r.u64()) }), nil
	case '3':
		return scalarCodec(4, func(b []byte, x int32) ([]byte, error) { return le.AppendUint32(b, uint32(x)), nil },
			func(r *flatReader) int32 { return int32(r.u32()) }), nil
	case '6':
		return scalarCodec(8, func(b []byte, x int64) ([]byte, error) { return le.AppendUint64(b, uint64(x)), nil },
			func(r *flatReader) int64 { return int64(r.u64()) }), nil
	case 'f':
		return scalarCodec(8, func(b []byte, x float64) ([]byte, error) {
			return le.AppendUint64(b, math.Float64bits(x)), nil
		}, func(r *flatReader) float64 { return math.Float64frombits(r.u64()) }), nil
	case 's':
		return scalarCodec(8, func(b []byte, x string) ([]byte, error) {
			return append(le.AppendUint64(b, uint64(len(x))), x...), nil
		}, func(r *flatReader) string { return string(r.bytes()) }), nil
	case 'y':
		return scalarCodec(8, func(b []byte, x []byte) ([]byte, error) {
			return append(le.AppendUint64(b, uint64(len(x))), x...), nil
		}, func(r *flatReader) []byte { return bytes.Clone(r.bytes()) }), nil
	case '?':
		return optionCodec(o, t)
	case 'L', 'A':
		return listCodec(o, t)
	case 'E':
		return resultCodec(o, t)
	case 'T':
		return tupleCodec(o, t)
	case '{':
		return recordCodec(o, t)
	case '<':
		return variantCodec(o, t)
	}
	return nil, mismatch(o, t, "it crosses only as an argument or a result, not inside another value")
}

// crossable reports an error if no OCaml type can match the Go type t,
// going dir: checked at Register, before OCaml binds the function with its
// types.
func crossable(t reflect.Type, dir direction) error {
	return crossableIn(t, dir, false, map[reflect.Type]bool{})
}

func crossableIn(t reflect.Type, dir direction, inside bool, seen map[reflect.Type]bool) error {
	held := isLwtGeneric(t, "Handle") || t == reflect.TypeFor[*Value]() || t.Implements(reflect.TypeFor[promiseType]()) ||
		t.Implements(reflect.TypeFor[streamType]())
	switch {
	case t.Implements(reflect.TypeFor[closureType]()) && dir == toOCaml:
		return fmt.Errorf("a %v is an OCaml function, which Go calls: a Go function for OCaml is an *lwt.Callback", t)
	case t.Implements(reflect.TypeFor[callbackType]()) && dir == fromOCaml:
		return fmt.Errorf("a %v is a Go function, which OCaml calls: an OCaml function for Go is an *lwt.Func", t)
	case t.Implements(reflect.TypeFor[closureType]()) || t.Implements(reflect.TypeFor[callbackType]()):
		held = true
	}
	if held {
		if inside {
			return fmt.Errorf("a %v crosses only as an argument or a result, not inside another value", t)
		}
		return nil
	}
	if seen[t] {
		return nil
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint8, reflect.Float64, reflect.String,
		reflect.Interface: // a variant, which RegisterVariant may declare later
		return nil
	case reflect.Pointer, reflect.Slice:
		return crossableIn(t.Elem(), dir, true, seen)
	case reflect.Struct:
		if isLwtGeneric(t, "Args2", "Args3", "Args4") {
			if inside {
				return fmt.Errorf("%v is the arguments of a function, not a value", t)
			}
			for i := range t.NumField() { // each crosses as if alone
				if err := crossableIn(t.Field(i).Type, dir, false, seen); err != nil {
					return within(fmt.Sprintf("argument %d", i+1), err)
				}
			}
			return nil
		}
		if t == reflect.TypeFor[time.Time]() {
			return errors.New("a time.Time crosses as its t.UnixNano() (an int) or t.Format(time.RFC3339Nano) (a string)")
		}
		for _, f := range exportedFields(t) {
			if err := crossableIn(f.Type, dir, true, seen); err != nil {
				return within(fmt.Sprintf("field %v.%s", t, f.Name), err)
			}
		}
		return nil
	}
	return fmt.Errorf("Go type %v cannot cross to OCaml (see the README's type table)", t)
}

// checkKind checks that t's kind can hold o's values: the Go types of each
// OCaml type, named types included (type UserID int64 is an int).
func checkKind(o *otype, t reflect.Type) error {
	if t == reflect.TypeFor[time.Time]() {
		return mismatch(o, t, "a time.Time crosses as its t.UnixNano() (an int) or t.Format(time.RFC3339Nano) (a string)")
	}
	k := t.Kind()
	var ok bool
	switch o.code {
	case 'u':
		ok = k == reflect.Struct && t.NumField() == 0
	case 'b':
		ok = k == reflect.Bool
	case 'i', '6':
		ok = k == reflect.Int64 || k == reflect.Int
	case '3':
		ok = k == reflect.Int32
	case 'c':
		ok = k == reflect.Uint8
	case 'f':
		ok = k == reflect.Float64
	case 's':
		ok = k == reflect.String
	case 'y':
		ok = k == reflect.Slice && t.Elem().Kind() == reflect.Uint8
	case '?':
		ok = k == reflect.Pointer
	case 'L', 'A':
		ok = k == reflect.Slice
	case 'E':
		ok = isLwtGeneric(t, "Result")
	case 'T', '{':
		ok = k == reflect.Struct
	case '<':
		ok = k == reflect.Interface
	default:
		return nil // the direct types: their codecs check
	}
	if !ok {
		return mismatch(o, t, "")
	}
	return nil
}

func optionCodec(o *otype, t reflect.Type) (*flatCodec, error) {
	e, err := flatCodecOf(o.elems[0], t.Elem())
	if err != nil {
		return nil, within("in an option", err)
	}
	return &flatCodec{min: 1,
		put: func(b []byte, p unsafe.Pointer) ([]byte, error) {
			x := *(*unsafe.Pointer)(p)
			if x == nil {
				return append(b, 0), nil
			}
			return e.put(append(b, 1), x)
		},
		get: func(r *flatReader, p unsafe.Pointer) {
			if r.u8() == 0 {
				*(*unsafe.Pointer)(p) = nil
				return
			}
			x := reflect.New(t.Elem()).UnsafePointer()
			e.get(r, x)
			*(*unsafe.Pointer)(p) = x
		},
	}, nil
}

// sliceHeader is a Go slice's layout.
type sliceHeader struct {
	data     unsafe.Pointer
	len, cap int
}

// listCodec: a list or an array is a slice; a nil slice is empty.
func listCodec(o *otype, t reflect.Type) (*flatCodec, error) {
	e, err := flatCodecOf(o.elems[0], t.Elem())
	if err != nil {
		return nil, within("in a "+map[byte]string{'L': "list", 'A': "array"}[o.code], err)
	}
	size := t.Elem().Size()
	return &flatCodec{min: 8,
		put: func(b []byte, p unsafe.Pointer) ([]byte, error) {
			s := (*sliceHeader)(p)
			b = le.AppendUint64(b, uint64(s.len))
			for i := range s.len {
				var err error
				if b, err = e.put(b, unsafe.Add(s.data, uintptr(i)*size)); err != nil {
					return nil, err
				}
			}
			return b, nil
		},
		get: func(r *flatReader, p unsafe.Pointer) {
			n := r.count(e.min)
			data := reflect.MakeSlice(t, n, n).UnsafePointer()
			for i := 0; i < n && r.err == nil; i++ {
				e.get(r, unsafe.Add(data, uintptr(i)*size))
			}
			*(*sliceHeader)(p) = sliceHeader{data, n, n}
		},
	}, nil
}

// Result is an OCaml ('a, 'e) result: Ok Ok unless IsError, else
// Error Error.
type Result[T, E any] struct {
	Ok      T
	Error   E
	IsError bool
}

// isLwtGeneric reports whether t is an instance of one of this package's
// generic struct types named (a Result, not a *Result nor a struct
// embedding one).
func isLwtGeneric(t reflect.Type, names ...string) bool {
	if t.Kind() != reflect.Struct || t.PkgPath() != lwtPkgPath {
		return false
	}
	for _, n := range names {
		if strings.HasPrefix(t.Name(), n+"[") {
			return true
		}
	}
	return false
}

var lwtPkgPath = reflect.TypeFor[Pair[int, int]]().PkgPath()

func resultCodec(o *otype, t reflect.Type) (*flatCodec, error) {
	okf, errf, flag := t.Field(0), t.Field(1), t.Field(2).Offset
	ok, err := flatCodecOf(o.elems[0], okf.Type)
	if err != nil {
		return nil, within("in Ok", err)
	}
	bad, err := flatCodecOf(o.elems[1], errf.Type)
	if err != nil {
		return nil, within("in Error", err)
	}
	return &flatCodec{min: 1,
		put: func(b []byte, p unsafe.Pointer) ([]byte, error) {
			if *(*bool)(unsafe.Add(p, flag)) {
				return bad.put(append(b, 1), unsafe.Add(p, errf.Offset))
			}
			return ok.put(append(b, 0), unsafe.Add(p, okf.Offset))
		},
		get: func(r *flatReader, p unsafe.Pointer) {
			if r.u8() == 0 {
				ok.get(r, unsafe.Add(p, okf.Offset))
				return
			}
			*(*bool)(unsafe.Add(p, flag)) = true
			bad.get(r, unsafe.Add(p, errf.Offset))
		},
	}, nil
}

// Pair, Tuple3 and Tuple4 are OCaml tuples; any Go struct whose exported
// fields are the tuple's parts, in order, is one too.
type (
	Pair[A, B any] struct {
		First  A
		Second B
	}
	Tuple3[A, B, C any] struct {
		First  A
		Second B
		Third  C
	}
	Tuple4[A, B, C, D any] struct {
		First  A
		Second B
		Third  C
		Fourth D
	}
)

// sequence writes and reads parts of a struct, at these offsets, in
// order: a tuple's, a record's (in OCaml's order), a constructor's.
func sequence(offsets []uintptr, codecs []*flatCodec) *flatCodec {
	c := &flatCodec{
		put: func(b []byte, p unsafe.Pointer) ([]byte, error) {
			for i, off := range offsets {
				var err error
				if b, err = codecs[i].put(b, unsafe.Add(p, off)); err != nil {
					return nil, err
				}
			}
			return b, nil
		},
		get: func(r *flatReader, p unsafe.Pointer) {
			for i, off := range offsets {
				codecs[i].get(r, unsafe.Add(p, off))
			}
		},
	}
	for _, e := range codecs {
		c.min += e.min
	}
	return c
}

// exportedFields lists t's exported fields but those tagged lwt:"-".
func exportedFields(t reflect.Type) []reflect.StructField {
	var fs []reflect.StructField
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() && f.Tag.Get("lwt") != "-" {
			fs = append(fs, f)
		}
	}
	return fs
}

func tupleCodec(o *otype, t reflect.Type) (*flatCodec, error) {
	fs := exportedFields(t)
	if len(fs) != len(o.elems) {
		return nil, mismatch(o, t, fmt.Sprintf("a tuple of %d is a Go struct of %d exported fields (it has %d)",
			len(o.elems), len(o.elems), len(fs)))
	}
	offsets := make([]uintptr, len(fs))
	codecs := make([]*flatCodec, len(fs))
	for i, f := range fs {
		c, err := flatCodecOf(o.elems[i], f.Type)
		if err != nil {
			return nil, within(fmt.Sprintf("in part %d of %v (Go %v.%s)", i+1, o, t, f.Name), err)
		}
		offsets[i], codecs[i] = f.Offset, c
	}
	return sequence(offsets, codecs), nil
}

// fieldKey is how a record field and a Go field match when no lwt tag names
// it: case and underscores aside (user_id is UserID).
func fieldKey(name string) string { return strings.ToLower(strings.ReplaceAll(name, "_", "")) }

func recordCodec(o *otype, t reflect.Type) (*flatCodec, error) {
	fields := exportedFields(t)
	byKey := map[string]int{} // a Go field's index in fields, by its tag or its fieldKey
	for i, f := range fields {
		key := fieldKey(f.Name)
		if tag := f.Tag.Get("lwt"); tag != "" {
			key = "=" + tag
		}
		if j, dup := byKey[key]; dup {
			return nil, mismatch(o, t, fmt.Sprintf("fields %s and %s both match one OCaml field (name one with an lwt tag)", fields[j].Name, f.Name))
		}
		byKey[key] = i
	}
	used := make([]bool, len(fields))
	offsets := make([]uintptr, len(o.fields))
	codecs := make([]*flatCodec, len(o.fields))
	for i, of := range o.fields {
		j, ok := byKey["="+of.name]
		if !ok {
			j, ok = byKey[fieldKey(of.name)]
		}
		if !ok || used[j] {
			return nil, mismatch(o, t, fmt.Sprintf("OCaml field %s has no Go field (by name, case and _ aside, or an lwt:%q tag)", of.name, of.name))
		}
		used[j] = true
		f := fields[j]
		c, err := flatCodecOf(of.typ, f.Type)
		if err != nil {
			return nil, within(fmt.Sprintf("in field %s of %v (Go %v.%s)", of.name, o, t, f.Name), err)
		}
		offsets[i], codecs[i] = f.Offset, c
	}
	for j, f := range fields {
		if !used[j] {
			return nil, mismatch(o, t, fmt.Sprintf("Go field %s has no OCaml field (tag it lwt:\"-\" to leave it out)", f.Name))
		}
	}
	return sequence(offsets, codecs), nil
}

// variants holds the Go sum types that RegisterVariant declared: an
// interface type's cases.
var variants sync.Map // reflect.Type → []reflect.Type

// RegisterVariant declares the Go interface type I as a sum type, whose
// cases are the types of cases: a value of the OCaml variant that a Ty
// describes is, in Go, an I holding the case whose type is named as the
// value's constructor (struct Circle for Circle, or *Circle). A constant
// constructor's case is a struct of no fields; otherwise the constructor's
// argument is the struct's exported fields: a tuple's parts in order, an
// inline record's fields by name, or one value in the struct's only field.
// Any goroutine; before the functions that use I are bound.
func RegisterVariant[I any](cases ...I) error {
	it := reflect.TypeFor[I]()
	if it.Kind() != reflect.Interface {
		return fmt.Errorf("lwt: RegisterVariant: %v is not an interface type", it)
	}
	var types []reflect.Type
	names := map[string]bool{}
	for _, c := range cases {
		ct := reflect.TypeOf(c)
		if ct == nil {
			return fmt.Errorf("lwt: RegisterVariant[%v]: a case is nil", it)
		}
		if st := ct; st.Kind() != reflect.Struct && (st.Kind() != reflect.Pointer || st.Elem().Kind() != reflect.Struct) {
			return fmt.Errorf("lwt: RegisterVariant[%v]: case %v is not a struct or a pointer to one", it, ct)
		}
		if names[caseName(ct)] {
			return fmt.Errorf("lwt: RegisterVariant[%v]: two cases are named %s", it, caseName(ct))
		}
		names[caseName(ct)] = true
		types = append(types, ct)
	}
	if len(types) == 0 {
		return fmt.Errorf("lwt: RegisterVariant[%v]: no cases", it)
	}
	if _, dup := variants.LoadOrStore(it, types); dup {
		return fmt.Errorf("lwt: RegisterVariant: %v is already registered", it)
	}
	return nil
}

// MustRegisterVariant is RegisterVariant that panics on error, for
// package-level declarations.
func MustRegisterVariant[I any](cases ...I) {
	if err := RegisterVariant(cases...); err != nil {
		panic(err)
	}
}

func caseName(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

func variantCodec(o *otype, t reflect.Type) (*flatCodec, error) {
	registered, ok := variants.Load(t)
	if !ok {
		return nil, mismatch(o, t, fmt.Sprintf("declare it with lwt.RegisterVariant[%v]", t))
	}
	cases := registered.([]reflect.Type)
	goCases := map[string]reflect.Type{}
	for _, ct := range cases {
		goCases[caseName(ct)] = ct
	}
	types := make([]reflect.Type, len(o.fields))
	codecs := make([]*flatCodec, len(o.fields))
	number := map[reflect.Type]uint32{}
	for i, ctor := range o.fields {
		ct, ok := goCases[ctor.name]
		if !ok {
			return nil, mismatch(o, t, fmt.Sprintf("OCaml constructor %s has no Go case (a type named %s)", ctor.name, ctor.name))
		}
		c, err := constructorCodec(ctor, ct)
		if err != nil {
			return nil, within(fmt.Sprintf("in constructor %s of %v (Go %v)", ctor.name, o, ct), err)
		}
		types[i], codecs[i], number[ct] = ct, c, uint32(i)
	}
	for _, ct := range cases { // in registration order: the first one left
		if _, ok := number[ct]; !ok {
			return nil, mismatch(o, t, fmt.Sprintf("Go case %s has no OCaml constructor", caseName(ct)))
		}
	}
	return &flatCodec{min: 4,
		put: func(b []byte, p unsafe.Pointer) ([]byte, error) {
			v := reflect.NewAt(t, p).Elem()
			if v.IsNil() {
				return nil, fmt.Errorf("lwt: a nil %v cannot cross to OCaml", t)
			}
			c := v.Elem()
			n, ok := number[c.Type()]
			if !ok {
				return nil, fmt.Errorf("lwt: %v is not a case of %v (lwt.RegisterVariant)", c.Type(), t)
			}
			var fields unsafe.Pointer
			if c.Kind() == reflect.Pointer {
				if c.IsNil() {
					return nil, fmt.Errorf("lwt: a nil %v cannot cross to OCaml", c.Type())
				}
				fields = c.UnsafePointer()
			} else { // an interface's value is not addressable: a copy
				x := reflect.New(c.Type())
				x.Elem().Set(c)
				fields = x.UnsafePointer()
			}
			return codecs[n].put(le.AppendUint32(b, n), fields)
		},
		get: func(r *flatReader, p unsafe.Pointer) {
			n := r.u32()
			if r.err != nil || n >= uint32(len(types)) {
				r.err = errMalformed
				return
			}
			ct := types[n]
			c := reflect.New(ct)
			if ct.Kind() == reflect.Pointer {
				c.Elem().Set(reflect.New(ct.Elem()))
				codecs[n].get(r, c.Elem().UnsafePointer())
			} else {
				codecs[n].get(r, c.UnsafePointer())
			}
			reflect.NewAt(t, p).Elem().Set(c.Elem())
		},
	}, nil
}

// constructorCodec matches a constructor's argument with its Go case's
// struct (see RegisterVariant).
func constructorCodec(ctor ofield, ct reflect.Type) (*flatCodec, error) {
	st := ct
	if st.Kind() == reflect.Pointer {
		st = st.Elem()
	}
	fs := exportedFields(st)
	if ctor.typ == nil {
		if len(fs) != 0 {
			return nil, fmt.Errorf("a constant constructor's case has no exported fields (%v has %d)", st, len(fs))
		}
		return sequence(nil, nil), nil
	}
	var err error
	if len(fs) == 1 {
		var c *flatCodec
		if c, err = flatCodecOf(ctor.typ, fs[0].Type); err == nil {
			return sequence([]uintptr{fs[0].Offset}, []*flatCodec{c}), nil
		}
	}
	if ctor.typ.code == 'T' || ctor.typ.code == '{' {
		return flatCodecOf(ctor.typ, st)
	}
	if err == nil {
		err = fmt.Errorf("a constructor of one %v is a struct of one exported field (%v has %d)", ctor.typ, st, len(fs))
	}
	return nil, err
}
