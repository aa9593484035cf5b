// Package collide registers Go functions whose names and types collide once
// turned into OCaml names, for lwt-bindgen: test/collide_bindings.ml is
// generated from it, and compiled with the tests (its functions are never
// called).
package collide

//go:generate go run lwt/cmd/lwt-bindgen -o ../collide_bindings.ml .

import (
	"context"

	"lwt"
)

// Types named like OCaml's own, Ty's, or each other once in OCaml.
type (
	Option struct{ Some int64 }
	T      struct{ X int }
	Field  struct {
		Type string // an OCaml keyword, as a label
		URL  string `lwt:"link"`
	}
	Both  struct{ URL, Url string } // one OCaml label: left out
	Shape interface{ isShape() }
	Tree  interface{ isTree() }
	Empty struct{}
	Leaf  struct{ N int }
)

func (Empty) isShape() {}
func (Empty) isTree()  {}
func (Leaf) isTree()   {}

func init() {
	lwt.MustRegisterVariant[Shape](Empty{})
	lwt.MustRegisterVariant[Tree](Empty{}, Leaf{}) // Empty twice: left out
	lwt.MustRegisterSync("a.b", func(o Option) (T, error) { return T{}, nil })
	lwt.MustRegisterSync("a_b", func(f Field) (Shape, error) { return Empty{}, nil })
	lwt.MustRegisterSync("option_ty", func(int) (int, error) { return 0, nil })
	lwt.MustRegisterSync("a_b_bound", func(int) (int, error) { return 0, nil })
	lwt.MustRegisterSync("ignore", func(int) (int, error) { return 0, nil })
	lwt.MustRegisterSync("bound_once", func(int) (int, error) { return 0, nil })
	lwt.MustRegister("bind_all", func(context.Context, Both) (int, error) { return 0, nil })
	lwt.MustRegister("tree", func(context.Context, Tree) (int, error) { return 0, nil })
}
