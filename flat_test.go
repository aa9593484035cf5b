package lwt

import (
	"context"
	"math"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// The Go side of a variant and a record that use every kind of flat value.

type fzShape interface{ isShape() }

type (
	Circle   struct{ R float64 }
	Rect     struct{ W, H float64 }
	Empty    struct{}
	Labelled struct { // an inline record: fields by name
		Label  string `lwt:"label"`
		Points []int64
	}
)

func (Circle) isShape()    {}
func (Rect) isShape()      {}
func (Empty) isShape()     {}
func (*Labelled) isShape() {}

func init() { MustRegisterVariant[fzShape](Circle{}, Rect{}, Empty{}, &Labelled{}) }

type userID int64

type fzUser struct {
	ID      userID
	Name    string
	Score   float64
	Tags    []string
	Email   *string
	Small   int32
	Big     int64
	Initial byte
	Shapes  []fzShape
	Status  Result[int64, string]
	Where   Tuple3[int, string, bool]
	Raw     []byte
	Unit    struct{}
	Scores  []float64
	Secret  string `lwt:"-"`
}

const (
	shapeCode = "<shape:Circle:fRect:T2ffEmpty.Labelled:{labelled:label:spoints:Li}>"
	userCode  = "{user:id:iname:sscore:ftags:Lsemail:?ssmall:3big:6initial:cshapes:A" + shapeCode +
		"status:Eiswhere:T3isbraw:yunit:uscores:Af}"
)

func mustCodec(t testing.TB, code string, typ reflect.Type) *flatCodec {
	t.Helper()
	o, err := parseOType(code)
	if err != nil {
		t.Fatal(err)
	}
	c, err := flatCodecOf(o, typ)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseOTypeSpellsOCaml(t *testing.T) {
	for code, want := range map[string]string{
		userCode:      "user",
		"LT2?iAs":     "(int option * string array) list",
		"EL3<v:A.>":   "(int32 list, v) result",
		"FT4ucy6?LLi": "((unit * char * bytes * int64) -> int list list option Lwt.t)",
	} {
		o, err := parseOType(code)
		if err != nil {
			t.Fatalf("%q: %v", code, err)
		}
		if got := o.String(); got != want {
			t.Errorf("%q is %q, want %q", code, got, want)
		}
	}
	for _, bad := range []string{"", "x", "L", "T5iiiii", "T1i", "{r:a:i", "{r:ai}", "<v:>", "<v:A:>", "ii", "E?i"} {
		if _, err := parseOType(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestFlatRoundTrip writes and reads a value of every kind, edge values
// included (NUL, empty, nil, deep nesting, the ends of each range).
func TestFlatRoundTrip(t *testing.T) {
	c := mustCodec(t, userCode, reflect.TypeFor[fzUser]())
	mail := "a\x00b"
	in := fzUser{ID: math.MaxInt64 >> 1, Name: "", Score: math.Inf(-1), Tags: []string{"", "\x00", "é"},
		Email: &mail, Small: math.MinInt32, Big: math.MinInt64, Initial: 255,
		Shapes: []fzShape{Circle{R: 1.5}, Rect{W: math.Copysign(0, -1), H: math.MaxFloat64}, Empty{},
			&Labelled{Label: "l", Points: []int64{math.MinInt64 >> 1, 0}}},
		Status: Result[int64, string]{Error: "no", IsError: true},
		Where:  Tuple3[int, string, bool]{First: -1, Second: "w", Third: true},
		Raw:    []byte{0, 1, 255}, Scores: []float64{0.5, math.SmallestNonzeroFloat64}}
	buf, err := c.put(nil, unsafe.Pointer(&in))
	if err != nil {
		t.Fatal(err)
	}
	var out fzUser
	r := flatReader{b: buf}
	c.get(&r, unsafe.Pointer(&out))
	if r.err != nil || len(r.b) != 0 {
		t.Fatalf("read: %v, %d bytes left", r.err, len(r.b))
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("wrote %+v\nread  %+v", in, out)
	}

	deep := reflect.TypeFor[[][][][][][][][]int64]()
	code := strings.Repeat("L", 8) + "i"
	dc := mustCodec(t, code, deep)
	v := [][][][][][][][]int64{{{{{{{{1, 2}}}}}}}, nil}
	if buf, err = dc.put(nil, unsafe.Pointer(&v)); err != nil {
		t.Fatal(err)
	}
	var got [][][][][][][][]int64
	r = flatReader{b: buf}
	dc.get(&r, unsafe.Pointer(&got))
	if r.err != nil || got[0][0][0][0][0][0][0][1] != 2 || got[1] == nil || len(got[1]) != 0 {
		t.Fatalf("deep list: %v %v", r.err, got)
	}
}

func TestFlatWriteRefusesWhatOCamlCannotHold(t *testing.T) {
	c := mustCodec(t, "Li", reflect.TypeFor[[]int64]())
	big := []int64{math.MaxInt64}
	if _, err := c.put(nil, unsafe.Pointer(&big)); err == nil || !strings.Contains(err.Error(), "63-bit") {
		t.Errorf("an int out of range: %v", err)
	}
	s := mustCodec(t, "L"+shapeCode, reflect.TypeFor[[]fzShape]())
	for _, bad := range []fzShape{nil, (*Labelled)(nil)} {
		in := []fzShape{bad}
		if _, err := s.put(nil, unsafe.Pointer(&in)); err == nil || !strings.Contains(err.Error(), "nil") {
			t.Errorf("%#v: %v", bad, err)
		}
	}
}

// TestBindTimeMismatchesNameBothSides: every way OCaml's type and Go's can
// differ is an error that says where.
func TestBindTimeMismatchesNameBothSides(t *testing.T) {
	type noEmail struct {
		ID   int64
		Name string
	}
	type extra struct {
		ID, Name string
		Age      int64
	}
	type twoKeys struct {
		UserID int64
		User_I int64 `lwt:"user_id"`
		Userid int64
	}
	type unexported struct{ a, b int64 }
	_ = unexported{a: 1, b: 2}
	type otherShape interface{ isShape() }
	for _, c := range []struct {
		code string
		typ  reflect.Type
		want string
	}{
		{"{r:id:iname:semail:s}", reflect.TypeFor[noEmail](), "OCaml field email has no Go field"},
		{"{r:id:iname:s}", reflect.TypeFor[extra](), "in field id of r (Go lwt.extra.ID): OCaml int is not Go string"},
		{"{r:id:s}", reflect.TypeFor[noEmail](), "OCaml string is not Go int64"},
		{"{r:user_id:i}", reflect.TypeFor[twoKeys](), "fields UserID and Userid both match"},
		{"T2ii", reflect.TypeFor[unexported](), "a tuple of 2 is a Go struct of 2 exported fields (it has 0)"},
		{"T3iii", reflect.TypeFor[Pair[int64, int64]](), "tuple of 3"},
		{"Li", reflect.TypeFor[[]uint64](), "OCaml int is not Go uint64"},
		{"?f", reflect.TypeFor[float64](), "OCaml float option is not Go float64"},
		{"Lh", reflect.TypeFor[[]Handle[int]](), "only as an argument or a result"},
		{"<v:A.B:i>", reflect.TypeFor[otherShape](), "declare it with lwt.RegisterVariant"},
		{"<shape:Circle:fRect:T2ff>", reflect.TypeFor[fzShape](), "Go case Empty has no OCaml constructor"},
		{"<shape:Circle:fRect:T2ffEmpty.Labelled:{l:label:spoints:Li}Square:f>", reflect.TypeFor[fzShape](), "OCaml constructor Square has no Go case"},
		{"<shape:Circle:sRect:T2ffEmpty.Labelled:{l:label:spoints:Li}>", reflect.TypeFor[fzShape](), "in constructor Circle"},
		{"<shape:Circle.Rect:T2ffEmpty.Labelled:{l:label:spoints:Li}>", reflect.TypeFor[fzShape](), "a constant constructor's case has no exported fields"},
		{"6", reflect.TypeFor[struct{ T int64 }](), "OCaml int64 is not Go struct"},
		{"Ls", reflect.TypeFor[[]Result[int, int]](), "OCaml string is not Go lwt.Result"},
	} {
		o, err := parseOType(c.code)
		if err != nil {
			t.Fatal(err)
		}
		_, err = flatCodecOf(o, c.typ)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s vs %v: %v\nwant %q", o, c.typ, err, c.want)
		}
	}
}

func TestRegisterVariantErrors(t *testing.T) {
	type notCase int
	for _, err := range []error{
		RegisterVariant[fzShape](Circle{}),
		RegisterVariant[int](1),
		RegisterVariant[any](),
		RegisterVariant[any](notCase(1)),
		RegisterVariant[any](Circle{}, &Circle{}),
		RegisterVariant[any](Circle{}, nil),
	} {
		if err == nil {
			t.Error("registered")
		}
	}
}

// TestLookalikeTypesAreMismatches: a pointer to one of the package's types,
// or a struct embedding one, is not that type: a clear error, not a panic.
func TestLookalikeTypesAreMismatches(t *testing.T) {
	type embeds struct{ Result[int64, string] }
	check := func(name string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
	parse := func(code string) *otype {
		o, err := parseOType(code)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	_, err := codecFor[*Result[int64, string]](parse("Eis"), fromOCaml)
	check("*Result", err, "OCaml (int, string) result is not Go *lwt.Result")
	_, err = codecFor[embeds](parse("Eis"), fromOCaml)
	check("a struct embedding Result", err, "is not Go lwt.embeds")
	_, err = codecFor[*Handle[int]](parse("h"), fromOCaml)
	check("*Handle", err, "an OCaml handle is a Go lwt.Handle[T]")
	_, err = codecFor[*Args2[int64, int64]](parse("M2ii"), fromOCaml)
	check("*Args2", err, "several arguments are a Go lwt.Args2")
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"*Handle registered", RegisterSync("lookalike.handle", func(*Handle[int]) (int64, error) { return 0, nil }),
			"crosses only as an argument or a result"},
		{"*Result registered", RegisterSync("lookalike.result", func(*Result[int64, int64]) (int64, error) { return 0, nil }), ""},
	} {
		if c.want == "" {
			if c.err != nil { // an option of a result: fine
				t.Errorf("%s: %v", c.name, c.err)
			}
			continue
		}
		check(c.name, c.err, c.want)
	}
	t.Cleanup(func() { forgetRegistered("lookalike.result") })
}

// TestFunctionsGoTheirWay: an *lwt.Func is OCaml's function, which comes
// from OCaml; an *lwt.Callback is Go's, which goes to OCaml. The other way
// round is refused when registered or bound, not at each call.
func TestFunctionsGoTheirWay(t *testing.T) {
	o, err := parseOType("Fii")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := codecFor[*Callback[int64, int64]](o, fromOCaml); err == nil || !strings.Contains(err.Error(), "is an *lwt.Func") {
		t.Errorf("a Callback from OCaml: %v", err)
	}
	if _, err := codecFor[*Func[int64, int64]](o, toOCaml); err == nil || !strings.Contains(err.Error(), "is an *lwt.Callback") {
		t.Errorf("a Func to OCaml: %v", err)
	}
	for _, err := range []error{
		RegisterSync("wrongway.arg", func(*Callback[int64, int64]) (int64, error) { return 0, nil }),
		RegisterSync("wrongway.result", func(int64) (*Func[int64, int64], error) { return nil, nil }),
		Register("wrongway.args", Fn2(func(context.Context, int64, *Callback[int64, int64]) (int64, error) { return 0, nil })),
	} {
		if err == nil || !strings.Contains(err.Error(), "which") {
			t.Errorf("registered: %v", err)
		}
	}
}

// TestMalformedCountsAreBounded: counts of elements of no bytes (units)
// are bounded per value, so that a few bytes cannot make a reader loop for
// long.
func TestMalformedCountsAreBounded(t *testing.T) {
	c := mustCodec(t, "LLu", reflect.TypeFor[[][]struct{}]())
	var b []byte
	b = le.AppendUint64(b, 32)
	for range 32 {
		b = le.AppendUint64(b, maxEmpty/8)
	}
	var out [][]struct{}
	r := flatReader{b: b}
	c.get(&r, unsafe.Pointer(&out))
	if r.err == nil {
		t.Fatalf("%d units in %d bytes read", 32*maxEmpty/8, len(b))
	}
	ok := le.AppendUint64(le.AppendUint64(nil, 1), 1000000)
	r = flatReader{b: ok}
	c.get(&r, unsafe.Pointer(&out))
	if r.err != nil || len(out[0]) != 1000000 {
		t.Fatalf("a million units: %v", r.err)
	}
}

// FuzzFlatRead reads any bytes as the record above: an error or a value,
// never a panic or a huge allocation; a value read writes back to bytes
// that read to it again.
func FuzzFlatRead(f *testing.F) {
	c := mustCodec(f, userCode, reflect.TypeFor[fzUser]())
	mail := "m"
	seed := fzUser{Tags: []string{"t"}, Email: &mail,
		Shapes: []fzShape{Empty{}, &Labelled{Points: []int64{1}}}, Scores: []float64{1}}
	good, err := c.put(nil, unsafe.Pointer(&seed))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var out fzUser
		r := flatReader{b: b}
		c.get(&r, unsafe.Pointer(&out))
		if r.err != nil {
			return
		}
		again, err := c.put(nil, unsafe.Pointer(&out))
		if err != nil {
			return // an int beyond 63 bits, which OCaml never writes
		}
		var back fzUser
		r = flatReader{b: again}
		c.get(&r, unsafe.Pointer(&back))
		if r.err != nil || !reflect.DeepEqual(sameNaN(out), sameNaN(back)) {
			t.Fatalf("read %+v, wrote and read %+v (%v)", out, back, r.err)
		}
	})
}

// sameNaN replaces NaNs, which DeepEqual never finds equal, by 0.
func sameNaN(u fzUser) fzUser {
	if u.Score != u.Score {
		u.Score = 0
	}
	for i, s := range u.Shapes {
		switch s := s.(type) {
		case Circle:
			if s.R != s.R {
				u.Shapes[i] = Circle{}
			}
		case Rect:
			if s.W != s.W || s.H != s.H {
				u.Shapes[i] = Rect{}
			}
		}
	}
	for i, x := range u.Scores {
		if x != x {
			u.Scores[i] = 0
		}
	}
	return u
}
