package lwt

// OCaml types as Lwt_interop.Ty describes them to Go (ty.ml's code): a
// prefix code, parsed once per bind or Lookup, on any goroutine. Plain
// values, immutable once parsed.
//
//	u unit   b bool   i int   c char   f float   s string   y bytes
//	3 int32  6 int64  h handle   o opaque
//	?T option   LT list   AT array   ETU (T, U) result
//	TnT1..Tn tuple of n (2 to 4)   FTU (T -> U Lwt.t)   STU (T -> U)
//	PT T Lwt.t   QT T Lwt_stream.t   MnT1..Tn the arguments of a function of n (2 to 4)
//	{name:field:T...}  record: each field its name, ':' and its type
//	<name:Ctor:T Ctor....>  variant: each constructor its name, then ':'
//	                        and its argument's type, or '.' if constant

import (
	"fmt"
	"strings"
)

type otype struct {
	code   byte
	name   string   // a record's or variant's type name
	elems  []*otype // option, list, array, promise: 1; result: ok, error; tuple, arguments: n; functions: argument, result
	fields []ofield // a record's fields, a variant's constructors
}

// ofield is a record's field or a variant's constructor (typ nil when
// constant).
type ofield struct {
	name string
	typ  *otype
}

func parseOType(code string) (*otype, error) {
	p := &typeParser{s: code}
	t := p.parse()
	if p.err == nil && p.i != len(p.s) {
		p.fail("trailing bytes")
	}
	if p.err != nil {
		return nil, fmt.Errorf("lwt: malformed OCaml type code %q: %v", code, p.err)
	}
	return t, nil
}

type typeParser struct {
	s   string
	i   int
	err error
}

func (p *typeParser) fail(what string) {
	if p.err == nil {
		p.err = fmt.Errorf("%s at byte %d", what, p.i)
	}
}

func (p *typeParser) next() byte {
	if p.i >= len(p.s) {
		p.fail("unexpected end")
		return 0
	}
	c := p.s[p.i]
	p.i++
	return c
}

// ident reads a name up to (and past) one of the bytes in ends, and
// returns it and the end byte.
func (p *typeParser) ident(ends string) (string, byte) {
	j := strings.IndexAny(p.s[p.i:], ends)
	if j <= 0 {
		p.fail("bad name")
		p.i = len(p.s)
		return "", 0
	}
	name := p.s[p.i : p.i+j]
	p.i += j + 1
	return name, p.s[p.i-1]
}

func (p *typeParser) parse() *otype {
	if p.err != nil {
		return &otype{code: 'u'}
	}
	t := &otype{code: p.next()}
	switch t.code {
	case 'u', 'b', 'i', 'c', 'f', 's', 'y', '3', '6', 'h', 'o':
	case '?', 'L', 'A', 'P', 'Q':
		t.elems = []*otype{p.parse()}
	case 'E', 'F', 'S':
		t.elems = []*otype{p.parse(), p.parse()}
	case 'T', 'M':
		n := int(p.next() - '0')
		if n < 2 || n > 4 {
			p.fail("bad tuple size")
			return t
		}
		for range n {
			t.elems = append(t.elems, p.parse())
		}
	case '{':
		t.name, _ = p.ident(":")
		for p.err == nil && p.i < len(p.s) && p.s[p.i] != '}' {
			name, _ := p.ident(":")
			t.fields = append(t.fields, ofield{name: name, typ: p.parse()})
		}
		p.next()
	case '<':
		t.name, _ = p.ident(":")
		for p.err == nil && p.i < len(p.s) && p.s[p.i] != '>' {
			name, end := p.ident(":.")
			f := ofield{name: name}
			if end == ':' {
				f.typ = p.parse()
			}
			t.fields = append(t.fields, f)
		}
		p.next()
		if len(t.fields) == 0 {
			p.fail("variant without constructors")
		}
	default:
		p.i--
		p.fail(fmt.Sprintf("unknown type %q", t.code))
	}
	return t
}

// String spells t as OCaml does: type applications are postfix, and
// tuples and functions come in parentheses, so nothing else needs them.
func (t *otype) String() string {
	switch t.code {
	case '?':
		return t.elems[0].String() + " option"
	case 'L':
		return t.elems[0].String() + " list"
	case 'A':
		return t.elems[0].String() + " array"
	case 'P':
		return t.elems[0].String() + " Lwt.t"
	case 'Q':
		return t.elems[0].String() + " Lwt_stream.t"
	case 'E':
		return "(" + t.elems[0].String() + ", " + t.elems[1].String() + ") result"
	case 'F':
		return "(" + t.elems[0].String() + " -> " + t.elems[1].String() + " Lwt.t)"
	case 'S':
		return "(" + t.elems[0].String() + " -> " + t.elems[1].String() + ")"
	case 'T', 'M':
		parts := make([]string, len(t.elems))
		for i, e := range t.elems {
			parts[i] = e.String()
		}
		if t.code == 'M' {
			return strings.Join(parts, " -> ")
		}
		return "(" + strings.Join(parts, " * ") + ")"
	case '{', '<':
		return t.name
	}
	return map[byte]string{'u': "unit", 'b': "bool", 'i': "int", 'c': "char", 'f': "float", 's': "string",
		'y': "bytes", '3': "int32", '6': "int64", 'h': "handle", 'o': "opaque"}[t.code]
}
