// The Go half of the example, built with -buildmode=c-archive and linked
// into main.exe.
package main

import "C" // a c-archive needs cgo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log"

	"lwt"
)

func init() {
	// OCaml calls Go: each call runs in a new goroutine.
	err := lwt.Register("sha256", func(_ context.Context, s string) (string, error) {
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:]), nil
	})
	if err != nil {
		log.Fatal(err)
	}

	// Go awaits OCaml: a loop task calls OCaml's "greet" for each name.
	err = lwt.RegisterTask("greet_all", func(ctx context.Context, names []string) ([]string, error) {
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
	if err != nil {
		log.Fatal(err)
	}
}

func main() {}
