// The Go half of the example, built with -buildmode=c-archive and linked
// into main.exe.
package main

import "C" // a c-archive needs cgo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"time"

	"lwt"
)

// Shape is OCaml's variant shape: one struct type per constructor.
type Shape interface{ isShape() }

type (
	Circle struct{ R float64 }
	Rect   struct{ W, H float64 }
)

func (Circle) isShape() {}
func (Rect) isShape()   {}

// Drawing is OCaml's record drawing: its fields match by name.
type Drawing struct {
	Title  string
	Shapes []Shape
}

func init() {
	lwt.MustRegisterVariant[Shape](Circle{}, Rect{})

	// OCaml calls Go: each call runs in a new goroutine.
	lwt.MustRegister("sha256", func(_ context.Context, s string) (string, error) {
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:]), nil
	})

	// Go awaits OCaml: a loop task calls OCaml's "greet" for each name.
	lwt.MustRegisterTask("greet_all", func(ctx context.Context, names []string) ([]string, error) {
		greet, err := lwt.Lookup[string, string]("greet")
		if err != nil {
			return nil, err
		}
		var out []string
		for _, name := range names {
			s, err := greet.Call(ctx, name)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	})

	lwt.MustRegister("area", func(_ context.Context, d Drawing) (float64, error) {
		var a float64
		for _, s := range d.Shapes {
			switch s := s.(type) {
			case Circle:
				a += math.Pi * s.R * s.R
			case Rect:
				a += s.W * s.H
			}
		}
		return a, nil
	})

	// A Go closure for OCaml: a plain function, freed by OCaml's GC.
	lwt.MustRegisterSync("counter", func(struct{}) (*lwt.Callback[struct{}, int64], error) {
		var n int64
		return lwt.SyncCallback(func(struct{}) (int64, error) { n++; return n, nil }), nil
	})

	// A Go promise for OCaml: an 'a Lwt.t that Go settles.
	lwt.MustRegisterSync("later", func(s string) (*lwt.Promise[string], error) {
		p, r := lwt.NewPromise[string]()
		time.AfterFunc(10*time.Millisecond, func() { r.Resolve(s) })
		return p, nil
	})
}

func main() {}
